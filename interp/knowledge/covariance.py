"""Second-moment statistics of MLP keys, C = E[k kᵀ], cached per (model, layer, corpus).

ROME (Meng et al. 2022, §3.1 and Appendix E.5) treats the MLP's output projection
``W_out`` as a linear associative memory whose keys ``k`` are its inputs
(``blocks.L.mlp.hook_post``: the input of ``c_proj`` on GPT-2, ``down_proj`` on
Llama) and solves for the least-squares rank-one update under C = E[k kᵀ], the
uncentred second moment of the keys over text.

The reference implementation streams 100k Wikipedia *documents* through GPT-2 XL,
which users report takes hours. Here the forward pass stops after layer L (the
keys of layer L do not depend on later layers), the moment accumulates in float64
on the model's device, and the result is cached as safetensors with a manifest
that is checked on every load: a file whose model, layer, corpus or token count
disagrees, or whose matrix is not finite and symmetric, is rebuilt. A killed run
resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.cache import atomic_path, cache_dir, slug
from interp.corpus import DEFAULT, corpus_id, token_rows
from interp.errors import InterpError, check_index
from interp.knowledge.edits import edits
from interp.progress import progress

__all__ = ["FORMAT", "KeyMoment", "key_hook", "key_moment"]

FORMAT = 1
_CHECKPOINT_EVERY = 32  # batches between resumable checkpoints


@dataclass
class KeyMoment:
    """C = E[k kᵀ] of ``blocks.{layer}.mlp.hook_post`` over ``tokens`` corpus tokens."""

    C: Float[Tensor, "d_mlp d_mlp"]
    layer: int
    corpus: str
    """The corpus id (name and content hash) the statistics came from."""
    tokens: int
    seconds: float
    """Time to compute (0.0 when read from the cache)."""
    cached: bool
    path: Path


def key_hook(layer: int) -> str:
    """The hook whose activation is ROME's key: the input of the MLP's output projection."""
    return f"blocks.{layer}.mlp.hook_post"


def _model_fingerprint(model) -> str:
    """Name, shape and a checksum of the unembedding, so a different checkpoint under the
    same name does not reuse another model's statistics."""
    cfg = model.cfg
    w = model.W_U.detach()
    return f"{cfg.model_name}|{cfg.n_layers}|{cfg.d_model}|{cfg.d_mlp}|{w.double().sum().item():.6e}"


def _manifest(model, layer: int, corpus: str, tokens: int, seq_len: int) -> dict:
    return {"format": FORMAT, "model": _model_fingerprint(model), "layer": layer, "corpus": corpus,
            "tokens": tokens, "seq_len": seq_len, "hook": key_hook(layer)}


def key_moment(model, layer: int, corpus: str | None = None, tokens: int = 100_000, seq_len: int = 256,
               batch_size: int = 8, refresh: bool = False) -> KeyMoment:
    """Load or compute C for ``layer`` over the first ``tokens`` tokens of ``corpus``."""
    layer = check_index(layer, model.cfg.n_layers, "layer")
    if tokens < seq_len:
        raise InterpError(f"covariance needs at least one row of {seq_len} tokens, not {tokens}")
    cid = corpus_id(corpus or DEFAULT)
    want = _manifest(model, layer, cid, tokens, seq_len)
    path = cache_dir("rome", "stats") / f"{slug(model.cfg.model_name)}-L{layer}-{cid}-{tokens}.safetensors"
    if not refresh and path.exists():
        C = _load(path, want, model.cfg.d_mlp)
        if C is not None:
            return KeyMoment(C.to(model.cfg.device), layer, cid, tokens, 0.0, True, path)
    if edits(model):
        raise InterpError("the model carries ROME edits; key statistics describe the unedited model: "
                          "undo the edits before computing them")
    t0 = time.perf_counter()
    C = _compute(model, layer, corpus, tokens, seq_len, batch_size, path, want)
    seconds = time.perf_counter() - t0
    with atomic_path(path) as tmp:
        save_file({"C": C.float().cpu().contiguous()}, str(tmp), metadata={"manifest": json.dumps(want)})
    path.with_suffix(".partial.safetensors").unlink(missing_ok=True)
    return KeyMoment(C.float(), layer, cid, tokens, seconds, False, path)


def _load(path: Path, want: dict, d_mlp: int) -> Tensor | None:
    """The cached C if its manifest matches and it is sound; None (with a note) otherwise."""
    try:

        with safe_open(str(path), "pt") as f:
            manifest = json.loads((f.metadata() or {}).get("manifest", "{}"))
            C = f.get_tensor("C")
    except (OSError, SafetensorError, json.JSONDecodeError, KeyError) as err:
        print(f"interp: covariance cache {path.name} is unreadable ({err}); rebuilding it", file=sys.stderr)
        return None
    if manifest != want:
        diff = sorted(k for k in set(want) | set(manifest) if want.get(k) != manifest.get(k))
        print(f"interp: covariance cache {path.name} is stale ({', '.join(diff)} differ); rebuilding it",
              file=sys.stderr)
        return None
    if C.shape != (d_mlp, d_mlp) or not torch.isfinite(C).all() or not torch.allclose(C, C.T, atol=1e-5):
        print(f"interp: covariance cache {path.name} is corrupt (shape {tuple(C.shape)}, "
              f"finite {bool(torch.isfinite(C).all())}); rebuilding it", file=sys.stderr)
        return None
    return C


def _compute(model, layer: int, corpus: str | None, tokens: int, seq_len: int, batch_size: int,
             path: Path, want: dict) -> Tensor:
    device = model.cfg.device
    d = model.cfg.d_mlp
    partial = path.with_suffix(".partial.safetensors")
    total = torch.zeros(d, d, dtype=torch.float64, device=device)
    done = 0  # rows already accumulated (a resumed run skips them)
    if partial.exists():
        try:
            state = load_file(str(partial))
            if json.loads(bytes(state["manifest"].tolist()).decode()) == want:
                total, done = state["sum"].double().to(device), int(state["rows"])
        except Exception:  # a checkpoint that cannot be trusted is ignored, not fatal
            total, done = torch.zeros_like(total), 0
    n_rows = -(-tokens // seq_len)
    hook = key_hook(layer)
    sums = {"sum": total}

    def accumulate(k, *, hook):
        k = k.reshape(-1, k.shape[-1]).double()
        sums["sum"] += k.T @ k
        return None

    bar = progress(total=n_rows, initial=done, desc=f"key statistics L{layer}", unit="row")
    batch: list[Tensor] = []
    batches = 0
    rows = token_rows(model, corpus, (n_rows - done) * seq_len, seq_len, skip_rows=done)
    with torch.no_grad():
        for row in rows:
            batch.append(row)
            if len(batch) < batch_size and done + len(batch) < n_rows:
                continue
            model.run_with_hooks(torch.stack(batch).to(device), fwd_hooks=[(hook, accumulate)],
                                 stop_at_layer=layer + 1)
            done += len(batch)
            bar.update(len(batch))
            batch = []
            batches += 1
            if batches % _CHECKPOINT_EVERY == 0 and done < n_rows:
                _checkpoint(partial, sums["sum"], done, want)
    bar.close()
    return sums["sum"] / (done * seq_len)


def _checkpoint(partial: Path, total: Tensor, rows: int, want: dict) -> None:
    manifest = torch.tensor(list(json.dumps(want).encode()), dtype=torch.uint8)
    with atomic_path(partial) as tmp:
        save_file({"sum": total.cpu(), "rows": torch.tensor(rows), "manifest": manifest}, str(tmp))
