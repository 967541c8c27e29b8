"""Feature extraction: one model pass over a corpus, every given SAE's activations into a store.

Documents are kept: each is tokenized alone and cut into contexts of ``ctx`` tokens
(a tail shorter than 2 tokens is dropped), each recorded with its document and start
offset, so a dashboard shows real text rather than rows of packed documents. Contexts
are numbered in corpus order and grouped into shards of ``contexts_per_shard``; shard
``s`` is a pure function of its contexts (fixed micro-batches, right-padded, so no real
token attends to padding), which makes a resumed job, or any number of ``torchrun``
ranks (rank r takes the shards s ≡ r mod world), write exactly the store one
uninterrupted process writes.

Tokens the SAE never saw in training are read by the model but not encoded, as the
trainer and the evaluation do (:mod:`saes.activations`): the BOS (not stored) or, on a
model without one, the first token of each context, which acts as the attention sink;
and massive activations, whose norm exceeds ``max_norm_ratio`` × the median of their
micro-batch at any of the SAEs' hooks. Their token rows stay in the store with
``skipped`` set (1: sink, 2: massive), and the manifest counts them.

The model runs only as far as the last SAE's hook (:func:`interp.capture.capture`). A shard is written
as Parquet files moved into place atomically, then committed by its record
``shards/NNNNN.json``; a killed job loses at most the shard in flight.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from jaxtyping import Float
from torch import Tensor

from interp.cache import atomic_path, write_json
from interp.capture import capture
from interp.corpus import corpus_id, documents
from interp.errors import InterpError
from interp.processes import alive
from interp.progress import progress
from saes.activations import typical_tokens
from saes.features.store import FORMAT, ROW_GROUP, SKIP_MASSIVE, SKIP_SINK, file_record, sae_name

__all__ = ["ExtractConfig", "ExtractResult", "check_store_out", "encode_text", "extract_features", "iter_contexts"]

LOCK = ".extract.lock"


@dataclass
class ExtractConfig:
    """What an extraction reads and how it cuts it."""

    corpus: str | None = None
    """Corpus spec (:mod:`interp.corpus`); None: the offline default corpus."""
    tokens: int | None = None
    """Stop after the context that reaches this many tokens (None: the whole corpus)."""
    ctx: int = 128
    """Tokens per context (a document's last context may be shorter)."""
    contexts_per_shard: int = 256
    model_batch: int = 32
    """Contexts per forward pass."""
    max_norm_ratio: float = 10.0
    """A token whose activation norm exceeds this multiple of its micro-batch's median is not encoded
    (0: encode every token but the sink), as in training."""
    hist_bins: int = 40
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.99)
    top_logits: int = 10
    neighbours: int = 10

    def __post_init__(self):
        if self.ctx < 2:
            raise InterpError(f"--ctx must be at least 2 (a context's first token is the attention sink), not {self.ctx}")
        if self.tokens is not None and self.tokens < 1:
            raise InterpError(f"--tokens must be at least 1, not {self.tokens}")


@dataclass
class ExtractResult:
    out: Path
    saes: list[str]
    tokens: int
    contexts: int
    documents: int
    shards: int
    shards_written: int
    """Shards this run wrote (the rest were already committed: a resume)."""
    skipped_sink: int
    skipped_massive: int
    seconds: float
    tokens_per_second: float
    """Tokens per second of the shards this run wrote."""
    files: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["out"] = str(self.out)
        return d


def iter_contexts(tokenizer, corpus: str | None, ctx: int, limit: int | None = None
                  ) -> Iterator[tuple[int, int, list[int]]]:
    """(document, start offset, token ids) of each context, in corpus order."""
    total, doc = 0, 0
    chunk: list[str] = []

    def cut(texts: list[str], first: int):
        nonlocal total
        for i, ids in enumerate(tokenizer(texts, add_special_tokens=False)["input_ids"]):
            for start in range(0, len(ids), ctx):
                piece = ids[start:start + ctx]
                if len(piece) >= 2:
                    yield first + i, start, piece
                    total += len(piece)
                    if limit is not None and total >= limit:
                        return True

    for text in documents(corpus):
        chunk.append(text)
        if len(chunk) == 64:
            done = yield from cut(chunk, doc)
            if done:
                return
            doc += len(chunk)
            chunk = []
    if chunk:
        yield from cut(chunk, doc)


def _shards(contexts: Iterator, per: int) -> Iterator[tuple[int, list]]:
    shard, items = 0, []
    for c in contexts:
        items.append(c)
        if len(items) == per:
            yield shard, items
            shard, items = shard + 1, []
    if items:
        yield shard, items


def check_store_out(out: str | Path) -> Path:
    """Refuse, before a model loads, an ``--out`` that cannot take this job's store: a file, an SAE
    directory, or a store another extraction is writing now (its lock names the process)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InterpError(f"--out {out} is a file; a feature store is a directory")
    if (out / "cfg.json").exists():
        raise InterpError(f"--out {out} is an SAE directory; give the store a directory of its own")
    owner = _lock_owner(out)
    if owner is not None:
        raise InterpError(f"another extraction is writing {out} now (process {owner['pid']} on {owner['host']}, "
                          f"started {owner['started']}); wait for it to finish, or give another --out")
    return out


def _lock_owner(out: Path) -> dict | None:
    """Who holds ``out``'s lock, when that process is still running on this machine (a lock left by a
    killed job, or by a process that has gone, does not count)."""
    try:
        owner = json.loads((out / LOCK).read_text())
        pid = int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if owner.get("host") != socket.gethostname():
        return owner  # another machine's job: it cannot be checked from here, so it is respected
    return owner if alive(pid) and pid != os.getpid() else None


class _StoreLock:
    """One extraction at a time per store: rank 0 creates ``out/.extract.lock`` (O_EXCL, naming its
    process) for the job's length; a second job is refused by :func:`check_store_out`."""

    def __init__(self, out: Path, rank: int):
        self.path, self.held = out / LOCK, False
        if rank != 0:
            return
        check_store_out(out)
        out.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a stale lock: its process has gone (checked just above)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:  # another job took it between the check and here
            check_store_out(out)
            raise InterpError(f"another extraction is writing {out} now; give another --out") from None
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S")}, f)
        self.held = True

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def extract_features(model, sae_dirs: list[str | Path], out: str | Path, cfg: ExtractConfig | None = None,
                     on_shard: Callable[[int], None] | None = None) -> ExtractResult:
    """Run the job (or finish it: committed shards are kept). ``on_shard(shard)`` is called after each
    shard this process commits. One job writes a store at a time (a lock file, :func:`check_store_out`)."""
    from interp.distributed import rank_world

    cfg = cfg or ExtractConfig()
    out = Path(out)
    created = not out.exists()
    lock = _StoreLock(out, rank_world()[0])
    try:
        return _extract(model, sae_dirs, out, cfg, on_shard)
    finally:
        lock.release()
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # refused before anything was written: leave no empty store behind


def _extract(model, sae_dirs: list[str | Path], out: Path, cfg: ExtractConfig,
             on_shard: Callable[[int], None] | None) -> ExtractResult:
    from interp.distributed import rank_world
    from saes.io import WEIGHTS, load_sae, resolve_hook

    if not sae_dirs:
        raise InterpError("give at least one SAE directory")
    names: set[str] = set()
    saes, entries = [], []
    for d in sae_dirs:
        sae = load_sae(d, device=str(model.cfg.device))
        hook = resolve_hook(model, sae)
        name = sae_name(d, names)
        names.add(name)
        saes.append((name, hook, sae))
        entries.append({"name": name, "dir": str(Path(d).resolve()), "hook": hook, "d_sae": sae.cfg.d_sae,
                        "d_in": sae.cfg.d_in, "architecture": sae.cfg.architecture,
                        "weights_sha256": file_record(Path(d) / WEIGHTS)["sha256"]})
    bos = model.tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
    config = {"format": FORMAT, "model": model.cfg.model_name, "corpus": cfg.corpus or "default",
              "corpus_id": corpus_id(cfg.corpus), "ctx": cfg.ctx, "tokens_limit": cfg.tokens,
              "contexts_per_shard": cfg.contexts_per_shard, "model_batch": cfg.model_batch,
              "max_norm_ratio": cfg.max_norm_ratio, "bos": bos is not None, "n_layers": model.cfg.n_layers,
              "saes": entries}
    rank, world = rank_world()
    contexts = iter_contexts(model.tokenizer, cfg.corpus, cfg.ctx, cfg.tokens)
    first_context = next(contexts, None)  # an empty corpus is refused before anything is written
    if first_context is None:
        raise InterpError(f"corpus {cfg.corpus or 'default'} has no text: no document of at least 2 tokens")
    old = _open_store(out, config, model, rank)

    t0 = time.perf_counter()
    written_tokens, written = 0, 0
    n_ctx = n_shards = 0
    total = cfg.tokens or _corpus_tokens(model, cfg.corpus)
    bar = progress(total=total, desc="extract", unit="tok", disable=rank != 0)
    for shard, items in _shards(itertools.chain([first_context], contexts), cfg.contexts_per_shard):
        first = shard * cfg.contexts_per_shard
        n_ctx, n_shards = first + len(items), shard + 1
        size = sum(len(ids) for _, _, ids in items)
        bar.update(size)
        if bar.total is not None and bar.n > bar.total:  # the last context ran past --tokens
            bar.total = bar.n
        if shard % world != rank or _committed(out, shard):
            continue
        _write_shard(model, saes, out, shard, first, items, cfg, bos)
        written_tokens += size
        written += 1
        bar.set_postfix_str(f"shard {shard}")
        if on_shard is not None:
            on_shard(shard)
    bar.close()
    elapsed = time.perf_counter() - t0
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    records = [json.loads((out / f"shards/{s:05d}.json").read_text()) for s in range(n_shards)]
    totals = {"contexts": n_ctx, "tokens": sum(r["tokens"] for r in records), "seen": sum(r["seen"] for r in records),
              "skipped_sink": sum(r["sink"] for r in records), "skipped_massive": sum(r["massive"] for r in records),
              "documents": len({d for r in records for d in r["documents"]})}
    unchanged = written == 0 and old is not None and old.get("complete") and old.get("shards") == records
    if rank == 0:
        if not unchanged:  # a finished store run again wrote nothing: its feature tables stand
            from saes.features.stats import write_feature_tables

            write_feature_tables(model, out, saes, records, cfg)
        write_json(out / "manifest.json", {**config, "shards": records, "complete": True, **totals})
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return ExtractResult(out, [n for n, _, _ in saes], totals["tokens"], n_ctx, totals["documents"], n_shards,
                         written, totals["skipped_sink"], totals["skipped_massive"], time.perf_counter() - t0,
                         written_tokens / elapsed if written else 0.0)


def _corpus_tokens(model, corpus: str | None) -> int | None:
    from interp.corpus import corpus_stats

    try:
        return corpus_stats(model.tokenizer, corpus, model.cfg.model_name)["tokens"]
    except InterpError:
        return None


def _open_store(out: Path, config: dict, model, rank: int) -> dict | None:
    """Create the store's manifest and vocabulary, or check that an existing store was written by the
    same job (model, SAE weights, corpus and cutting), so that resuming never mixes two jobs. Returns
    the existing manifest (None for a new store)."""
    path = out / "manifest.json"
    old = None
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InterpError(f"{path} is not JSON ({err.msg}); this is not a store this job can resume") from None
        _check_same(out, old, config)
    elif rank == 0:
        if out.exists() and any(p.name != LOCK for p in out.iterdir()):
            raise InterpError(f"{out} exists and is not a feature store; give a new or empty --out")
        write_json(path, {**config, "shards": None, "complete": False})
    if rank == 0 and not (out / "vocab.parquet").exists():
        _write_vocab(out, model)
    from interp.distributed import rank_world

    if rank_world()[1] > 1:
        import torch.distributed as dist

        dist.barrier()
    return old


def _check_same(out: Path, old: dict, new: dict) -> None:
    if old.get("model") != new["model"]:
        raise InterpError(f"{out} was written with model {old.get('model')!r}, not {new['model']!r}; "
                          "give a new --out, or the same model")
    old_saes = {s["name"]: s for s in old.get("saes", [])}
    for s in new["saes"]:
        o = old_saes.get(s["name"])
        if o is None or o["weights_sha256"] != s["weights_sha256"] or o["hook"] != s["hook"]:
            raise InterpError(f"{out} was written by a different SAE than {s['dir']} (its weights or hook differ); "
                              "give a new --out for these SAEs")
    if len(old_saes) != len(new["saes"]):
        raise InterpError(f"{out} holds SAEs {', '.join(old_saes)}; resume it with exactly those SAE directories")
    for key in ("corpus_id", "ctx", "tokens_limit", "contexts_per_shard", "model_batch", "max_norm_ratio", "bos"):
        if old.get(key) != new[key]:
            raise InterpError(f"{out} was written with {key} = {old.get(key)!r}, not {new[key]!r}; "
                              "resume with the same options, or give a new --out")


def _write_vocab(out: Path, model) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tok = model.tokenizer
    n = max(model.cfg.d_vocab, len(tok))
    texts = tok.batch_decode([[i] for i in range(n)], clean_up_tokenization_spaces=False)
    with atomic_path(out / "vocab.parquet") as tmp:
        pq.write_table(pa.table({"token": pa.array(range(n), pa.int32()), "text": texts}), tmp)


def _committed(out: Path, shard: int) -> bool:
    """Whether shard ``shard`` has a commit record whose files are all present at their recorded sizes."""
    try:
        rec = json.loads((out / f"shards/{shard:05d}.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all((out / rel).exists() and (out / rel).stat().st_size == m["bytes"] for rel, m in rec["files"].items())


@torch.no_grad()
def _write_shard(model, saes, out: Path, shard: int, first: int, items: list, cfg: ExtractConfig,
                 bos: int | None) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    hooks = sorted({h for _, h, _ in saes})
    cols = {k: [] for k in ("context", "document", "doc_offset", "position", "token", "skipped")}
    acts = {name: {k: [] for k in ("feature", "context", "position", "value")} for name, _, _ in saes}
    sink = massive = 0
    pad = model.tokenizer.eos_token_id or 0
    for b in range(0, len(items), cfg.model_batch):
        batch = items[b:b + cfg.model_batch]
        lens = torch.tensor([len(ids) for _, _, ids in batch])
        width = int(lens.max())
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        for i, (_, _, row) in enumerate(batch):
            ids[i, :len(row)] = torch.tensor(row)
        tokens = ids if bos is None else torch.cat([torch.full((len(batch), 1), bos), ids], 1)
        cache = capture(model, tokens.to(model.cfg.device), hooks)
        off = 0 if bos is None else 1
        pos = torch.arange(width)
        valid = pos[None] < lens[:, None]
        skipped = torch.zeros(len(batch), width, dtype=torch.int8)
        if bos is None:
            skipped[:, 0] = SKIP_SINK
        if cfg.max_norm_ratio > 0:
            cand = (valid & (skipped == 0)).to(model.cfg.device)
            heavy = torch.zeros_like(cand)
            for h in hooks:  # the trainer's rule, over this forward batch's tokens
                heavy[cand] |= ~typical_tokens(cache[h][:, off:][cand], cfg.max_norm_ratio)
            skipped[heavy.cpu()] = SKIP_MASSIVE
        seen = valid & (skipped == 0)
        sink += int((valid & (skipped == SKIP_SINK)).sum())
        massive += int((skipped == SKIP_MASSIVE).sum())
        ctx_ids = first + b + torch.arange(len(batch))
        rows, cpos = valid.nonzero(as_tuple=True)
        cols["context"].append(ctx_ids[rows].numpy())
        cols["document"].append(np.array([batch[r][0] for r in rows.tolist()], dtype=np.int64))
        cols["doc_offset"].append(np.array([batch[r][1] for r in rows.tolist()], dtype=np.int32) + cpos.numpy())
        cols["position"].append(cpos.numpy().astype(np.int32))
        cols["token"].append(ids[rows, cpos].numpy().astype(np.int32))
        cols["skipped"].append(skipped[rows, cpos].numpy())
        srow, spos = seen.nonzero(as_tuple=True)
        dev_seen = seen.to(model.cfg.device)
        for name, hook, sae in saes:
            f = sae.encode(cache[hook][:, off:][dev_seen].to(sae.W_enc.dtype))
            tok_i, feat = f.nonzero(as_tuple=True)
            acts[name]["feature"].append(feat.cpu().numpy().astype(np.int32))
            acts[name]["context"].append(ctx_ids[srow[tok_i.cpu()]].numpy())
            acts[name]["position"].append(spos[tok_i.cpu()].numpy().astype(np.int32))
            acts[name]["value"].append(f[tok_i, feat].float().cpu().numpy())
    files = {}
    tok_table = pa.table({k: np.concatenate(v) for k, v in cols.items()})
    files[f"tokens/{shard:05d}.parquet"] = tok_table
    for name, a in acts.items():
        arrays = {k: np.concatenate(v) for k, v in a.items()}
        order = np.lexsort((arrays["position"], arrays["context"], arrays["feature"]))
        files[f"acts/{name}/{shard:05d}.parquet"] = pa.table({k: v[order] for k, v in arrays.items()})
    record = {"shard": shard, "contexts": [first, first + len(items)], "tokens": int(tok_table.num_rows),
              "seen": int(tok_table.num_rows) - sink - massive, "sink": sink, "massive": massive,
              "documents": sorted({d for d, _, _ in items}), "files": {}}
    for rel, table in files.items():
        with atomic_path(out / rel) as tmp:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP, compression="zstd")
        record["files"][rel] = file_record(out / rel)
    write_json(out / f"shards/{shard:05d}.json", record)


@torch.no_grad()
def encode_text(model, sae, text: str, hook: str | None = None, max_norm_ratio: float = 10.0
                ) -> tuple[list[str], Float[Tensor, "pos d_sae"], list[int]]:
    """Live: the SAE's feature activations on every token of ``text``. The sink and massive-activation tokens
    (norm above ``max_norm_ratio`` × this text's median), marked in the returned ``skipped``, get zeros."""
    from interp.tokens import str_tokens

    hook = hook or sae.cfg.hook_name
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise InterpError("the text has no tokens")
    bos = model.tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
    tokens = torch.tensor([([bos] if bos is not None else []) + ids], device=model.cfg.device)
    _, cache = model.run_with_cache(tokens, names_filter=hook)
    x = cache[hook][0, 0 if bos is None else 1:]
    skipped = [0] * len(ids)
    if bos is None:
        skipped[0] = SKIP_SINK
    cand = torch.tensor([s == 0 for s in skipped], device=x.device)
    if max_norm_ratio > 0 and cand.any():
        heavy = torch.zeros_like(cand)
        heavy[cand] = ~typical_tokens(x[cand], max_norm_ratio)
        skipped = [SKIP_MASSIVE if h else s for s, h in zip(skipped, heavy.tolist())]
    keep = torch.tensor([s == 0 for s in skipped], device=x.device)
    f = torch.zeros(len(ids), sae.cfg.d_sae, device=x.device)
    if keep.any():
        f[keep] = sae.encode(x[keep].to(sae.W_enc.dtype)).float()
    return str_tokens(model, torch.tensor(ids)), f.cpu(), skipped
