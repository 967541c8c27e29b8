"""Load a hooked model: the embedded default, tiny test models, or any Hugging Face model.

Every model comes back as a TransformerLens 4 ``TransformerBridge``, so the legacy
hook names (``blocks.{l}.hook_resid_pre``, ``blocks.{l}.attn.hook_pattern``, ...)
work on all of them.

* ``smollm2-135m`` (default) and ``gemma3-270m``: the embedded models, whose GGUFs ship in
  PyPI packages (:mod:`interp.embedded`: dequantized once, cached as float32 safetensors).
* ``tiny-gpt2`` / ``tiny-llama`` / ``tiny-gemma3``: seeded random models built from
  ``transformers`` configs (GPT-2: LayerNorm, MHA, GELU; Llama: RMSNorm, GQA, rotary, gated MLP;
  Gemma 3: sandwich norms, QK-norm, sliding windows, one KV head, tied scaled embeddings).
  Unit tests run every method on all three to show it is architecture-general.
* anything else: a local model directory or a Hugging Face name, through
  ``TransformerBridge.boot_transformers``.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from interp.architectures import (ALIASES, BUILTIN, DEFAULT_MODEL, KNOWN_HF, Architecture, ModelShape, ModelSpec,
                                  canonical_name)
from interp.embedded import (_load_embedded, embedded_cached, embedded_gguf, embedded_installed, embedded_terms,
                             load_embedded_tokenizer)
from interp.errors import InterpError

if TYPE_CHECKING:  # torch is imported where a model is built, so `interp models` stays light
    import torch

__all__ = ["ALIASES", "BUILTIN", "DEFAULT_MODEL", "KNOWN_HF", "ModelSpec", "canonical_name", "check_device", "check_kv_cache",
           "default_device", "embedded_cached", "embedded_gguf", "hf_cached_snapshot", "list_models",
           "load_embedded_tokenizer", "load_model", "model_architecture", "model_shape", "prompt_token_ids", "prompt_tokenizer",
           "builtin_tokenizer"]

_TINY_VOCAB = 49152  # the embedded tokenizer's, which the tiny models share


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def check_device(device: str) -> str:
    """``device`` if this machine has it, else :class:`InterpError` with one line (a CPU-only torch
    otherwise fails deep inside ``.to()`` with an assertion)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InterpError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from err
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InterpError(f"--device {device}: this machine has no CUDA device (torch {torch.__version__}"
                              f"{' is a CPU-only build' if torch.version.cuda is None else ''}); use --device cpu")
        if dev.index is not None and dev.index >= n:
            raise InterpError(f"--device {device}: this machine has {n} CUDA device(s), cuda:0 to cuda:{n - 1}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise InterpError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return device


def load_model(name: str | None = None, device: str | None = None,
               dtype: torch.dtype | None = None, device_map: str | dict | None = None):
    """Return a ``TransformerBridge`` for ``name`` (default: the embedded SmolLM2-135M), in
    ``dtype`` (default float32).

    ``device_map`` splits the model across devices instead of placing it on ``device``: an
    accelerate device map (``{"model.embed_tokens": 0, "model.layers.0": 0, ..., "lm_head": "cpu"}``)
    or ``"auto"`` (fill each GPU in turn, then the CPU). Activations move between devices at
    the module boundaries, so every analysis runs unchanged; ``model.cfg.device`` is the
    device of the embeddings, where token ids go.

    Raises :class:`InterpError` with one line when the model cannot be found.
    """
    import torch

    dtype = dtype or torch.float32
    name = (name or DEFAULT_MODEL).strip()
    if not name:
        raise InterpError("empty model name; try the embedded default 'smollm2-135m'")
    name = canonical_name(name)
    if device_map is not None and device is not None:
        raise InterpError("give a device or a device_map, not both")
    device = check_device(device or default_device())
    spec = BUILTIN.get(name)
    if spec is not None and spec.kind == "embedded":
        hf_model, tokenizer = _load_embedded(dtype, spec.name)
        bridge = _wrap(_place(hf_model, device, device_map), tokenizer, spec.name)
    elif spec is not None:
        from interp._tiny import build_tiny

        hf_model, tokenizer = build_tiny(spec.name, tokenizer=builtin_tokenizer(spec.name))
        bridge = _wrap(_place(hf_model.to(dtype=dtype), device, device_map), tokenizer, spec.name)
    else:
        bridge = _load_huggingface(name, device, dtype, device_map)
    if device_map is not None:
        bridge.cfg.device = _input_device(bridge.original_model)
    if spec is not None and spec.prepend_bos is not None:
        bridge.cfg.default_prepend_bos = spec.prepend_bos
    bridge.eval()
    check_kv_cache(bridge)
    return bridge


def check_kv_cache(model) -> None:
    """Raise :class:`InterpError` unless a cached forward through the bridge fills the key/value
    cache. Generation, tracing, GCG and relations reuse that cache; when the installed
    ``transformers`` hands it to attention under a name the TransformerLens bridge does not read
    (transformers 5.24 with TransformerLens 4.3), it stays empty and their results would be
    silently wrong."""
    import torch

    ids = torch.zeros((1, 2), dtype=torch.long, device=model.cfg.device)
    with torch.no_grad():
        cache = model.original_model(input_ids=ids, use_cache=True).past_key_values
    if cache is None or not hasattr(cache, "get_seq_length"):
        return  # an architecture without an HF cache: nothing reuses one
    if cache.get_seq_length() != ids.shape[1]:
        from importlib.metadata import version

        raise InterpError(f"transformers {version('transformers')} does not fill the key/value cache through "
                          f"TransformerLens {version('transformer-lens')}'s bridge; "
                          "install a supported pair: pip install 'transformers>=5.9,<5.24'")


def _place(hf_model, device: str, device_map):
    """``hf_model`` on ``device``, or dispatched over ``device_map`` with accelerate."""
    if device_map is None:
        return hf_model.to(device)
    from accelerate import dispatch_model, infer_auto_device_map

    if isinstance(device_map, str):
        if device_map != "auto":
            raise InterpError(f"device_map {device_map!r}: give 'auto' or a dict of module name -> device")
        device_map = infer_auto_device_map(hf_model, no_split_module_classes=hf_model._no_split_modules or [])
    if not isinstance(device_map, dict) or not device_map:
        raise InterpError("device_map must be 'auto' or a non-empty dict of module name -> device")
    for where in set(device_map.values()):
        if where != "disk" and not str(where).startswith("cpu"):
            check_device(f"cuda:{where}" if isinstance(where, int) else str(where))
    names = {n for n, _ in hf_model.named_modules()}
    unknown = sorted(k for k in device_map if k and k not in names)
    if unknown:
        raise InterpError(f"device_map names {unknown[0]!r}, which is not a module of this model "
                          f"(e.g. {sorted(n for n in names if n.count('.') == 2)[:2]})")
    try:
        hf_model = dispatch_model(hf_model, device_map=device_map)
    except (ValueError, RuntimeError) as err:
        raise InterpError(f"device_map: {str(err).splitlines()[0]}") from err
    return hf_model


def _input_device(hf_model) -> str:
    """Where token ids go: the device of the input embeddings."""
    return str(hf_model.get_input_embeddings().weight.device)


def _wrap(hf_model, tokenizer, name: str):
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    arch = hf_model.config.architectures[0] if hf_model.config.architectures else None
    arch = arch or type(hf_model).__name__
    return build_bridge_from_module(hf_model.eval(), arch, hf_config=hf_model.config,
                                    tokenizer=tokenizer, model_name=name)


# --- Hugging Face names and local directories ----------------------------------------

def _hub_reachable(timeout: float = 3.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def hf_cached_snapshot(name: str) -> Path | None:
    """The local snapshot directory of a Hugging Face model, or None if not cached."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True,
                                      allow_patterns=["*.json", "*.safetensors", "*.model",
                                                      "*.txt", "*.tiktoken"]))
    except Exception:
        return None


def _check_model_dir(path: Path) -> None:
    if not (path / "config.json").is_file():
        raise InterpError(f"model directory {path} has no config.json")
    if not any(path.glob("*.safetensors")):
        pickles = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        if pickles:
            raise InterpError(f"model directory {path} has only pickle weights ({pickles[0]}); "
                              "pickles are never loaded, convert them to safetensors")
        raise InterpError(f"model directory {path} has no weights (*.safetensors)")


def _load_huggingface(name: str, device: str, dtype: torch.dtype, device_map=None):
    from transformer_lens.model_bridge import TransformerBridge

    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise InterpError(f"model path {name} does not exist or is not a directory")
        _check_model_dir(path)
        source = str(path)
    else:
        snapshot = hf_cached_snapshot(name)
        if snapshot is not None and any(snapshot.glob("*.safetensors")):
            source = str(snapshot)  # load offline, no network retries
        elif _hub_reachable():
            source = name
        else:
            raise _unknown(name)
    try:
        place = {"device_map": device_map} if device_map is not None else {"device": device}
        bridge = TransformerBridge.boot_transformers(source, dtype=dtype, **place)
    except InterpError:
        raise
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InterpError(f"could not load model {name!r}: {first}") from err
    bridge.cfg.model_name = name
    return bridge


def list_models() -> list[dict]:
    """Every model the workbench can name, and whether it loads offline."""
    rows = []
    for spec in BUILTIN.values():
        if spec.kind == "embedded":
            terms = embedded_terms(spec.name)
            rows.append({"name": spec.name, "kind": spec.kind, "description": spec.description,
                         "offline": embedded_installed(spec.name), "cached": embedded_cached(spec.name),
                         "size": spec.size, "licence": spec.licence, "terms": str(terms) if terms else None})
        else:
            rows.append({"name": spec.name, "kind": spec.kind, "description": spec.description,
                         "offline": True, "cached": True, "size": "", "licence": "", "terms": None})
    seen = set()
    for name in KNOWN_HF + _cached_hf_repos():
        if name in seen:
            continue
        seen.add(name)
        cached = hf_cached_snapshot(name) is not None
        rows.append({"name": name, "kind": "huggingface", "description": "Hugging Face model",
                     "offline": cached, "cached": cached})
    return rows


def _cached_hf_repos() -> list[str]:
    try:
        from huggingface_hub import scan_cache_dir

        return sorted(r.repo_id for r in scan_cache_dir().repos if r.repo_type == "model")
    except Exception:
        return []


def _unknown(name: str) -> InterpError:
    from interp.architectures import nearest_names

    near = nearest_names(name)
    hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
    return InterpError(f"unknown model {name!r}: {hint}It is not built in ({', '.join(BUILTIN)}), not a local "
                       f"directory, not in the Hugging Face cache, and the hub cannot be reached; the embedded "
                       f"default {DEFAULT_MODEL!r} works offline")


def model_shape(name: str | None) -> ModelShape | None:
    """The shape of the model ``name`` names, from its config alone: the built-in table, a local
    directory's or the Hugging Face cache's ``config.json``. None when only the hub could say (the
    load will). A name that cannot load at all is refused here, in one line and without torch."""
    from interp.architectures import shape_from_config

    config = _config_of(name)
    return shape_from_config(config) if config is not None else None


def model_architecture(name: str | None) -> Architecture:
    """The family entry (:class:`interp.architectures.Architecture`) of the model ``name`` names, from
    its config alone; the pre-norm default when only the hub could say."""
    from interp.architectures import architecture_of_type

    config = _config_of(name) or {}
    return architecture_of_type(str(config.get("model_type", "")))


def _config_of(name: str | None) -> dict | None:
    name = canonical_name(name)
    spec = BUILTIN.get(name)
    if spec is not None:
        return spec.config if spec.kind != "tiny" else {**spec.config, "vocab_size": _TINY_VOCAB}
    path = Path(name).expanduser()
    if path.exists() or name.startswith((".", "/", "~")):
        if not path.is_dir():
            raise InterpError(f"model path {name} does not exist or is not a directory")
        _check_model_dir(path)
        source = path
    else:
        source = hf_cached_snapshot(name)
        if source is None:
            if _hub_reachable():
                return None
            raise _unknown(name)
    try:
        config = json.loads((source / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InterpError(f"cannot read {source / 'config.json'}: {err}") from err
    return config if isinstance(config, dict) else None


def builtin_tokenizer(name: str):
    """A built-in model's tokenizer: an embedded model's own, the embedded default's for the tiny ones."""
    spec = BUILTIN[canonical_name(name)]
    return load_embedded_tokenizer(spec.name if spec.kind == "embedded" else DEFAULT_MODEL)


@functools.lru_cache(maxsize=4)
def prompt_tokenizer(name: str):
    """:func:`builtin_tokenizer`, loaded once per process, for reading prompts before a model loads (the
    preflight and the verbs' early checks tokenize every prompt they are given). Never handed to a model."""
    return builtin_tokenizer(name)


def prompt_token_ids(name: str | None, text: str) -> list[int] | None:
    """The token ids a built-in model reads for ``text`` (its BOS convention included), from the
    tokenizer alone: what ``interp.tokens.to_tokens`` gives once the model is loaded. None for other
    models, whose convention only the loaded bridge knows."""
    spec = BUILTIN.get(canonical_name(name))
    if spec is None:
        return None
    tok = prompt_tokenizer(spec.name)
    ids = list(tok(text)["input_ids"])
    bos = tok.bos_token_id
    if spec.prepend_bos and bos is not None and (not ids or ids[0] != bos):
        ids = [bos, *ids]
    elif spec.prepend_bos is False and ids and bos is not None and ids[0] == bos and not text.startswith(tok.bos_token):
        ids = ids[1:]
    return ids
