"""A streaming activation store: corpus tokens in, shuffled activation batches out.

The model runs only up to the last hook harvested (:func:`interp.capture.capture`), several hooks
are harvested in one pass, and each row's first position is dropped: the BOS where
the model prepends one, otherwise the first token, which then acts as the attention
sink (on SmolLM2 its residual norm at L15 is ~23,600 against a median of ~170, and
it would dominate both the input scaling and the loss). The sink is not always at
position 0: when the first token is a weak one (a lone digit, say), the next token
takes the role, with the same ~25,000 norm (about one row in 256 on the default
corpus). Such "massive activations" (Sun et al. 2024) are dropped wherever they are:
a token whose activation norm exceeds ``max_norm_ratio`` times its block's median, at
any harvested hook. Left in, one of them is enough to dominate a threshold SAE's
error (JumpReLU and BatchTopK fire every latent above θ, so x̂ grows with x); the
evaluation skips the same tokens. Packed corpus rows have no padding. Activations are mixed in blocks: ``block_rows`` corpus rows are
harvested, their tokens shuffled with a generator seeded by (seed, block index), and
cut into batches. Batch ``i`` is therefore a pure function of ``i``: a resumed run,
or another DDP rank, gets exactly the batches an uninterrupted single process would.
With ``cache_dir`` each block is written once as a safetensors shard (atomically)
and later runs read it instead of running the model.

Blocks live on the store's device when they fit (a quarter of the GPU's free memory at
most, :func:`_fits_on_device`): the harvest keeps its activations there and a cached
shard moves there once, so a batch is a slice, not a host-to-device copy per step.
Reading from the cache, the next ``PREFETCH_BLOCKS`` shards are read (into pinned
memory on a GPU) by background threads while the current block trains.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import torch
from jaxtyping import Bool, Float
from safetensors.torch import load_file, save_file
from torch import Tensor

from interp.cache import atomic_path
from interp.capture import capture
from interp.host_memory import release_freed_memory
from interp.corpus import corpus_id, token_rows
from interp.errors import InterpError, check_hook

__all__ = ["ActivationStore", "PREFETCH_BLOCKS", "typical_tokens"]

PREFETCH_BLOCKS = 2


def typical_tokens(acts: Float[Tensor, "batch d_in"], max_norm_ratio: float) -> Bool[Tensor, " batch"]:
    """True where a token's norm is at most ``max_norm_ratio`` × the median norm (False: a massive
    activation). A ratio of 0 (or below) keeps every token."""
    if max_norm_ratio <= 0:
        return torch.ones(len(acts), dtype=torch.bool, device=acts.device)
    norms = acts.float().norm(dim=-1)
    return norms <= max_norm_ratio * norms.median()


class ActivationStore:
    """Batches of ``batch_size`` activation vectors for each hook in ``hooks``."""

    def __init__(self, model, hooks: list[str], corpus: str | None = None, batch_size: int = 4096,
                 seq_len: int = 128, block_rows: int = 256, model_batch: int = 32, seed: int = 0,
                 cache_dir: str | Path | None = None, device: str | None = None, max_norm_ratio: float = 10.0,
                 epochs: int = 1):
        for h in hooks:
            check_hook(model, h)
        self.model, self.hooks, self.corpus = model, list(hooks), corpus
        self.batch_size, self.seq_len, self.block_rows = batch_size, seq_len, block_rows
        self.model_batch, self.seed, self.max_norm_ratio = model_batch, seed, max_norm_ratio
        self.device = device or str(model.cfg.device)
        self.bos = bool(model.cfg.default_prepend_bos) and model.tokenizer.bos_token_id is not None
        self.kept_per_row = seq_len if self.bos else seq_len - 1  # position 0 (BOS or sink) dropped
        self.tokens_per_block = block_rows * self.kept_per_row
        if self.tokens_per_block < batch_size:
            raise InterpError(f"a block of {block_rows} rows x {seq_len} tokens is smaller than one batch "
                              f"of {batch_size}; raise block_rows")
        self.batches_per_block = self.tokens_per_block // batch_size
        key = hashlib.sha256(f"{model.cfg.model_name}|{hooks}|{corpus_id(corpus)}|{seq_len}|{block_rows}|{self.bos}"
                             f"|kept{self.kept_per_row}|seed{seed}".encode()).hexdigest()[:16]
        self.cache_dir = Path(cache_dir) / key if cache_dir else None
        if not isinstance(epochs, int) or epochs < 1:
            raise InterpError(f"epochs must be a positive integer, got {epochs!r}")
        self.epochs = epochs
        self._blocks_per_epoch: int | None = None
        self._block: tuple[int, dict[str, Tensor]] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: dict[int, Future] = {}
        self._rows: Iterator[Tensor] | None = None
        self._next_row = 0

    def rows_used(self, steps: int) -> int:
        """Corpus rows (of ``seq_len`` tokens) that the first ``steps`` batches draw from."""
        blocks = max(steps - 1, 0) // self.batches_per_block + 1
        if self.epochs > 1:
            blocks = min(blocks, self.blocks_per_epoch())
        return blocks * self.block_rows

    def blocks_per_epoch(self) -> int:
        """Whole blocks in one pass over the corpus (counted once per corpus and tokenizer, then cached):
        documents are packed end to end with one separator each, as :func:`interp.corpus.token_rows` does."""
        if self._blocks_per_epoch is None:
            from interp.corpus import corpus_stats

            stats = corpus_stats(self.model.tokenizer, self.corpus, self.model.cfg.model_name)
            sep = 1 if self.model.tokenizer.eos_token_id is not None else 0
            rows = (stats["tokens"] + sep * stats["documents"]) // self.seq_len
            self._blocks_per_epoch = rows // self.block_rows
            if self._blocks_per_epoch < 1:
                raise InterpError(f"corpus {self.corpus or 'default'} holds {rows} rows of {self.seq_len} tokens, "
                                  f"fewer than one block of {self.block_rows}")
        return self._blocks_per_epoch

    def epoch_of(self, block: int) -> tuple[int, int]:
        """(epoch, corpus block) that global block ``block`` reads. Epoch 0 reads the corpus in order;
        each later epoch visits every block once more, in an order seeded by the epoch, and shuffles
        the tokens inside each block afresh."""
        if self.epochs == 1:
            return 0, block
        per = self.blocks_per_epoch()
        epoch, j = divmod(block, per)
        if epoch >= self.epochs:
            raise InterpError(f"{self.epochs} epoch(s) of corpus {self.corpus or 'default'} hold {per * self.epochs} "
                              f"blocks of {self.tokens_per_block:,} tokens; ask for fewer tokens or more --epochs")
        if epoch == 0:
            return 0, j
        order = torch.randperm(per, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + 7919 * epoch))
        return epoch, int(order[j])

    def batch(self, i: int) -> dict[str, Float[Tensor, "batch d_in"]]:
        """Global batch ``i`` (deterministic)."""
        block, j = divmod(i, self.batches_per_block)
        acts = self.block(block)
        sl = slice(j * self.batch_size, (j + 1) * self.batch_size)
        return {h: a[sl].to(self.device, non_blocking=True) for h, a in acts.items()}

    def sample(self, n_tokens: int) -> dict[str, Tensor]:
        """The first ``n_tokens`` activations of block 0 (for input scaling and b_dec init)."""
        return {h: a[:n_tokens] for h, a in self.block(0).items()}

    def block(self, block: int) -> dict[str, Tensor]:
        """Every kept activation of block ``block``, shuffled (the batches of the block are slices of it)."""
        if self._block is not None and self._block[0] == block:
            return self._block[1]
        epoch, source = self.epoch_of(block)
        shard = self._shard(source)
        pending = self._pending.pop(source, None)
        acts = pending.result() if pending is not None else self._read(shard) if shard is not None else None
        self._prefetch(block)
        self._block = None  # the last block goes before the next is built: one block held, not two
        if acts is None:
            acts = self._shuffled(self._harvest(source), source)
            if shard is not None:  # shards hold every token; the outlier filter is applied on reading
                with atomic_path(shard) as tmp:
                    save_file({h: a.cpu() for h, a in acts.items()}, str(tmp))
        if epoch:  # the same tokens again, in a new order
            acts = self._shuffled(acts, source + 104_729 * epoch)
        home = self.device if _fits_on_device(acts, self.device) else "cpu"
        acts = {h: a.to(home, non_blocking=True) for h, a in acts.items()}
        acts = self._drop_massive(acts, block)
        self._block = (block, acts)
        release_freed_memory()  # the harvest's copies, handed back rather than kept by the allocator
        return acts

    def _shuffled(self, acts: dict[str, Tensor], salt: int) -> dict[str, Tensor]:
        """``acts`` with their tokens in one seeded order (the same for every hook)."""
        perm = torch.randperm(self.tokens_per_block,
                              generator=torch.Generator().manual_seed(self.seed * 1_000_003 + salt))
        out = {}
        for h in list(acts):  # each hook's unshuffled copy goes as its shuffled one is made: a block and one hook
            a = acts.pop(h)
            out[h] = a[perm.to(a.device)].contiguous()
            del a
        return out

    def _shard(self, block: int) -> Path | None:
        return self.cache_dir / f"block-{block:06d}.safetensors" if self.cache_dir else None

    def _read(self, shard: Path) -> dict[str, Tensor] | None:
        """A cached shard (pinned for a fast copy to a GPU); None if absent or damaged (harvested again)."""
        if not shard.exists():
            return None
        try:
            acts = load_file(str(shard))
        except Exception:
            return None
        return {h: a.pin_memory() for h, a in acts.items()} if self.device.startswith("cuda") else acts

    def _prefetch(self, block: int) -> None:
        """Start reading the shards of the blocks after global block ``block`` that are cached and not yet
        asked for."""
        if self.cache_dir is None:
            return
        for later in range(block + 1, block + 1 + PREFETCH_BLOCKS):
            try:
                nxt = self.epoch_of(later)[1]
            except InterpError:  # past the last epoch
                return
            shard = self._shard(nxt)
            if nxt not in self._pending and shard.exists():
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(PREFETCH_BLOCKS, thread_name_prefix="shard-prefetch")
                self._pending[nxt] = self._pool.submit(self._read, shard)

    def _drop_massive(self, acts: dict[str, Tensor], block: int) -> dict[str, Tensor]:
        if not self.max_norm_ratio:
            return acts
        keep = torch.stack([typical_tokens(a, self.max_norm_ratio) for a in acts.values()]).all(0)
        if int(keep.sum()) < self.batches_per_block * self.batch_size:
            raise InterpError(f"block {block}: {int((~keep).sum())} of {len(keep)} tokens have activation norms above "
                              f"{self.max_norm_ratio:g}x the median, leaving fewer than the {self.batches_per_block} "
                              f"batches of {self.batch_size} the block must supply; choose a batch size that leaves "
                              f"room (a block holds {self.tokens_per_block:,} tokens), or raise max_norm_ratio "
                              "(0 keeps everything)")
        return {h: acts.pop(h)[keep] for h in list(acts)}  # one hook's copy at a time, as _shuffled

    @torch.no_grad()
    def _harvest(self, block: int) -> dict[str, Tensor]:
        start = block * self.block_rows
        if self._rows is None or self._next_row != start:
            self._rows = token_rows(self.model, self.corpus, None, self.seq_len, skip_rows=start)
            self._next_row = start
        rows = []
        for _ in range(self.block_rows):
            try:
                rows.append(next(self._rows))
            except StopIteration:
                raise InterpError(f"corpus {self.corpus or 'default'} ran out after {self._next_row} rows of "
                                  f"{self.seq_len} tokens; ask for fewer training tokens, or pass over it "
                                  "again with --epochs") from None
            self._next_row += 1
        out: dict[str, list[Tensor]] = {h: [] for h in self.hooks}
        bos = self.model.tokenizer.bos_token_id
        for i in range(0, len(rows), self.model_batch):
            tokens = torch.stack(rows[i:i + self.model_batch]).to(self.model.cfg.device)
            if self.bos:
                tokens = torch.cat([tokens.new_full((tokens.shape[0], 1), bos), tokens], 1)
            # the BOS, or the first token acting as the attention sink, dropped as each hook fires (a copy)
            got = capture(self.model, tokens, self.hooks, lambda a: a[:, 1:].reshape(-1, a.shape[-1]).float())
            for h in self.hooks:
                out[h].append(got.pop(h))
        acts = {h: torch.cat(out.pop(h)) for h in self.hooks}  # one hook's micro-batches and its block at a time
        return acts if _fits_on_device(acts, str(self.model.cfg.device)) else {h: a.cpu() for h, a in acts.items()}


def _fits_on_device(acts: dict[str, Tensor], device: str) -> bool:
    """Whether a block may stay on ``device``: always on the CPU; on a GPU, up to a quarter of its free
    memory, leaving the rest to the model and the SAE."""
    if not device.startswith("cuda"):
        return True
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return sum(a.numel() * a.element_size() for a in acts.values()) <= free // 4
