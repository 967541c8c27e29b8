"""Train an SAE on one hook: Adam with warm-up and decay, dead-latent tracking, exact resume, DDP.

Batch ``i`` comes from :class:`saes.activations.ActivationStore` as a pure function of
``i``, so a checkpoint needs only the step, the weights, the optimiser and scheduler
states and the dead-latent counters: a killed run resumes and ends with the same
weights as one that was never stopped. Under ``torchrun`` every rank takes an equal
slice of each global batch and ``DistributedDataParallel`` averages the gradients
(NCCL on GPU, gloo on CPU), so N processes reach the weights of one process with the
same global batch.

Checkpoints (``DIR/checkpoint.pt``, written atomically every ``checkpoint_every``
steps) are loaded with ``weights_only=True``. A non-finite loss stops training with
the last good checkpoint in place. Metrics go to ``DIR/metrics.jsonl``, each line with its
wall time and tokens/s; the final SAE is saved in SAELens's layout in ``DIR``, with the
corpus rows it trained on recorded so that ``sae eval`` can hold them out.

The loop never waits for the GPU except at logging and checkpoint steps: the
non-finite-loss check and the dead-latent count that switches AuxK on are read there
(the latter every ``DEAD_CHECK_EVERY`` steps, a constant so that resumed runs match),
and blocks of activations stay on the device (see :class:`ActivationStore`).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from interp.corpus import corpus_id
from interp.distributed import init_distributed, rank_world
from interp.errors import InterpError, warn
from interp.host_memory import available_bytes, peak_rss_bytes
from interp.progress import Estimate, progress
from saes.activations import ActivationStore
from saes.base import SAE
from saes.batchtopk import BatchTopKSAE
from saes.clt import save_circuit_tracer_clt
from saes.clt_training import TrainableCLT
from saes.config import SAEConfig
from saes.io import make_sae, save_sae
from saes.jumprelu import JumpReLUSAE
from saes.step import TrainStep, make_optimizer, optimizer_step_
from saes.topk import TopKSAE
from saes.train_checkpoint import check_same_run, save_checkpoint
from saes.train_memory import check_training_memory, training_memory
from saes.transcoder import TranscoderSet, layer_dir, save_circuit_tracer, write_set_manifest

CALIBRATION_BATCHES = 8  # BatchTopK's inference threshold is set from the run's last batches
DEAD_TOKENS = 10_000_000  # Gao et al. 2024: a latent is dead after 10M tokens without firing
DEAD_CHECK_EVERY = 16  # steps between the host's looks at whether any latent is dead (AuxK on or off)

__all__ = ["TrainConfig", "TrainResult", "check_train_out", "init_distributed", "optimizer_step_", "train"]


@dataclass
class TrainConfig:
    """One training run."""

    hook: str
    """The hook read, or with ``layers`` a template such as ``blocks.{l}.hook_resid_mid``."""
    architecture: str = "topk"
    d_sae: int = 0
    """Latents (0: 16 × d_in)."""
    k: int = 32
    tokens: int = 2_000_000
    batch_size: int = 4096
    lr: float = 0.0
    """Adam's learning rate (0: :func:`default_lr` of the width)."""
    warmup_frac: float = 0.01
    """Linear learning-rate warm-up over this fraction of steps."""
    decay_frac: float = 0.2
    """Linear decay to 0 over the last fraction of steps."""
    grad_clip: float = 1.0
    l1_coefficient: float = 5.0
    l0_coefficient: float = 1.0
    init_l0: float = 0.0
    """JumpReLU: set each latent's initial θ from the data so the initial L0 is this (0: the fixed
    ``jumprelu_init_threshold``). Short runs need it; see :meth:`JumpReLUSAE.init_threshold_from_`."""
    max_norm_ratio: float = 10.0
    """Drop tokens whose activation norm exceeds this multiple of the median (attention-sink "massive
    activations" away from position 0; see :mod:`saes.activations`). 0 keeps every token."""
    seq_len: int = 128
    block_rows: int = 0
    """Corpus rows harvested per block of activations (0: :func:`default_block_rows` of the hooks)."""
    corpus: str | None = None
    seed: int = 0
    """Seeds the corpus's shuffle (and so keys the activation cache) and, unless ``init_seed`` is
    set, the SAE's initial weights."""
    init_seed: int | None = None
    """Seeds the SAE's initial weights alone (None: ``seed``). Runs that differ only in it train
    on the same tokens in the same order, so they share one activation cache: a seed spread
    without a second harvest."""
    checkpoint_every: int = 200
    log_every: int = 20
    dead_tokens: int = 0
    """Tokens without firing before a latent counts as dead (0: 10M, scaled down to a tenth of
    the run for runs shorter than 100M tokens)."""
    compile: bool = False
    cuda_graphs: bool = True
    """On a GPU, in one process and without ``compile``: replay the step as a CUDA graph
    (:mod:`saes.step`); the weights equal the eager step's."""
    epochs: int = 1
    """Passes allowed over the corpus: a run longer than the corpus reads it again, block by block in a
    new seeded order with its tokens reshuffled (:meth:`saes.activations.ActivationStore.epoch_of`)."""
    activation_cache: str | None = None
    """Folder for activation shards, so repeated runs skip the model."""
    hook_out: str = ""
    """A transcoder's target hook (or template, with ``layers``), e.g. ``blocks.{l}.hook_mlp_out``; "" trains SAEs."""
    skip: bool = True
    """A transcoder's linear skip path W_skip."""
    layers: list[int] | None = None
    """Train one dictionary per layer from one model pass, into ``OUT/layer_{l}`` (None: ``hook`` is one hook)."""
    clt: bool = False
    """With ``layers`` and ``hook_out``: one cross-layer transcoder over those layers (:mod:`saes.clt_training`),
    saved in ``OUT`` in circuit-tracer's CLT layout, instead of one transcoder per layer."""
    extra: dict = field(default_factory=dict)

    def for_layer(self, layer: int) -> "TrainConfig":
        """The config of one layer's dictionary: the same as a single-layer run with these options and
        ``init_seed`` :func:`layer_seed` of the run's, so that no two layers start from the same weights
        (they did: after a short run feature #381 recurred at adjacent layers)."""
        base = self.seed if self.init_seed is None else self.init_seed
        return replace(self, hook=self.hook.replace("{l}", str(layer)),
                       hook_out=self.hook_out.replace("{l}", str(layer)), layers=None,
                       block_rows=self.resolved_block_rows(), init_seed=layer_seed(base, layer))

    def hooks(self) -> list[str]:
        """Every hook the run harvests."""
        layers = self.layers if self.layers is not None else [None]
        return list(dict.fromkeys(t.replace("{l}", str(layer)) for layer in layers
                                  for t in (self.hook, self.hook_out) if t))

    def resolved_block_rows(self) -> int:
        return self.block_rows or default_block_rows(len(self.hooks()), self.batch_size, self.seq_len)

    @property
    def steps(self) -> int:
        return max(1, self.tokens // self.batch_size)

    def dead_window(self) -> int:
        return self.dead_tokens or min(DEAD_TOKENS, max(self.batch_size, self.tokens // 10))


def default_block_rows(n_hooks: int, batch_size: int, seq_len: int) -> int:
    """256 rows for one or two hooks; fewer for more, so that a block of many layers' activations stays near
    the memory of 512 rows of one hook (60 hooks of SmolLM2: 73 rows, 1.3 GB), yet holds two batches with
    room (about a tenth) for the massive-activation tokens the store drops."""
    return min(256, max(-(-9 * batch_size // (4 * max(seq_len - 1, 1))), 512 // max(n_hooks, 1)))


def layer_seed(seed: int, layer: int) -> int:
    """The initial-weight seed of layer ``layer``'s dictionary in a multi-layer run seeded ``seed``."""
    return seed + 1000 * (layer + 1)


def default_lr(d_sae: int) -> float:
    """2e-4 · sqrt(2^14 / d_sae): the learning rate falling as one over the root of the width, as
    Gao et al. (2024, fig. 3) found for TopK SAEs. 2.7e-4 at the default 16 × 576 latents, 5.3e-4 at
    2,304. ``benchmarks/sae_efficiency.py`` measured it against the old fixed 2e-4 and SAELens."""
    return 2e-4 * math.sqrt(2**14 / d_sae)


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    n = cfg.steps
    warm = max(1, int(cfg.warmup_frac * n))
    if step < warm:
        return (step + 1) / warm
    decay_start = int((1 - cfg.decay_frac) * n)
    if step >= decay_start and cfg.decay_frac > 0:
        return max(0.0, (n - step) / max(1, n - decay_start))
    return 1.0


class _Objective(nn.Module):
    """The SAE's loss as a module, so DistributedDataParallel can wrap it."""

    def __init__(self, sae: SAE):
        super().__init__()
        self.sae = sae

    def forward(self, x, progress: float, dead, target=None):
        return self.sae.loss(x, progress, dead, target)


@dataclass
class TrainResult:
    sae: SAE
    steps: int
    tokens: int
    seconds: float
    final: dict
    resumed_from: int
    out_dir: Path
    layers: dict[int, SAE] = field(default_factory=dict)
    """A multi-layer run's dictionaries by layer (``sae`` is the first)."""
    finals: dict[int, dict] = field(default_factory=dict)
    """Each layer's last metrics line."""
    memory: dict = field(default_factory=dict)
    """The memory estimate printed before harvesting (:mod:`saes.train_memory`) and the process's peak
    resident memory at the end (host; a GPU's dictionaries are not in it)."""


def check_train_out(cfg: TrainConfig, out_dir: str | Path, resume: bool = True) -> None:
    """Everything about ``out_dir`` that can be refused before the model loads: a file, a feature
    store, or a checkpoint of another run (its recorded config against ``cfg``; the learning rate
    is compared later when it is the width's default, which needs the model's d_in). Warns when
    ``cfg.tokens`` is less than one batch, since a run always takes at least one whole step."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InterpError(f"--out {out} is a file; give a directory for the SAE")
    if (out / "manifest.json").exists():
        raise InterpError(f"--out {out} is a feature store; give the SAE a directory of its own "
                          "(extract then writes the store from it)")
    for jcfg, jout in _jobs(cfg, out):
        ckpt = jout / "checkpoint.pt"
        if resume and ckpt.exists():
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            check_same_run(ckpt, state, jcfg, compare_lr=bool(cfg.lr))
    if cfg.tokens < cfg.batch_size:
        warn(f"--tokens {cfg.tokens:,} is less than one batch: training takes 1 step of --batch-size "
             f"{cfg.batch_size:,} tokens")


def train(model, cfg: TrainConfig, out_dir: str | Path, resume: bool = True) -> TrainResult:
    """Train (or resume) and save the SAE in SAELens layout at ``out_dir``.

    A run that fails leaves either nothing (an ``out_dir`` it created is removed) or a resumable
    checkpoint, which its error names."""
    out = Path(out_dir)
    created = not out.exists()
    try:
        return _train(model, cfg, out, resume)
    except BaseException as err:
        ckpts = [jout / "checkpoint.pt" for _, jout in _jobs(cfg, out) if (jout / "checkpoint.pt").exists()]
        if ckpts:
            ckpt = ckpts[0] if cfg.layers is None or cfg.clt else out
            if isinstance(err, InterpError) and str(ckpt) not in str(err):
                raise InterpError(f"{err} (run the same command again to resume from {ckpt})") from err
            if isinstance(err, KeyboardInterrupt):  # Ctrl-C: say what is kept and how to go on
                step = min(int(torch.load(c, map_location="cpu", weights_only=True, mmap=True)["step"])
                           for c in ckpts)  # mapped: only the step is read, not every layer's weights and Adam state
                warn(f"interrupted; {ckpt} holds a checkpoint at step {step:,}: run the same command again to "
                     "resume from there")
        elif created and out.exists():
            shutil.rmtree(out, ignore_errors=True)
        raise


def _jobs(cfg: TrainConfig, out: Path) -> list[tuple[TrainConfig, Path]]:
    """(one dictionary's config, its directory) for each dictionary the run trains."""
    if cfg.layers is None or cfg.clt:
        return [(replace(cfg, block_rows=cfg.resolved_block_rows()), out)]
    return [(cfg.for_layer(layer), out / layer_dir(layer)) for layer in cfg.layers]


def _train(model, cfg: TrainConfig, out: Path, resume: bool) -> TrainResult:
    out.mkdir(parents=True, exist_ok=True)
    rank, world = rank_world()
    if cfg.batch_size % world:
        raise InterpError(f"batch size {cfg.batch_size} does not split evenly over {world} processes")
    device = str(model.cfg.device)
    cfg = replace(cfg, block_rows=cfg.resolved_block_rows())
    jobs = _jobs(cfg, out)
    hooks = cfg.hooks()
    store = ActivationStore(model, hooks, cfg.corpus, cfg.batch_size, cfg.seq_len, cfg.block_rows,
                            seed=cfg.seed, cache_dir=cfg.activation_cache, device=device,
                            max_norm_ratio=cfg.max_norm_ratio, epochs=cfg.epochs)
    if cfg.epochs > 1:  # fail now, not after the first epoch, if even every pass is too short
        store.epoch_of((cfg.steps - 1) // store.batches_per_block)
    memory = training_memory(cfg, model.cfg.d_model, store.tokens_per_block, store.model_batch, cfg.seq_len, device)
    check_training_memory(memory)  # before the first harvest
    if rank == 0:
        free = available_bytes()
        print(f"interp: {memory.line()}" + (f"; {free / 2**30:.1f} GB free" if free else ""),
              file=sys.stderr, flush=True)
    # a copy: views would keep block 0 (every hook's activations) alive for the whole run
    sample = {h: a.to(device, copy=True) for h, a in store.sample(8192 if cfg.hook_out else min(cfg.batch_size, 8192)).items()}
    runs = [_Run(model, jcfg, jout, store, sample, resume, rank, world) for jcfg, jout in jobs]
    start = min(r.start for r in runs)
    what = (f"{len(runs)} {'transcoders' if cfg.hook_out else 'SAEs'} ({cfg.architecture}, layers "
            f"{_span(cfg.layers)})" if cfg.layers is not None else f"SAE {cfg.architecture} {cfg.hook}")
    if cfg.clt:
        what = f"CLT ({cfg.architecture}, layers {_span(cfg.layers)})"
    bar = progress(total=cfg.steps, initial=start, desc=what, unit="step", disable=rank != 0)
    t0 = time.perf_counter()
    clock = {"t": t0, "step": start}  # the last metrics line, for tokens/s over the interval
    # The first block of activations (a model pass) and its steps: a fair unit to time for the estimate.
    estimate = Estimate(f"training {what}", cfg.steps - start, "steps", "fewer with --tokens")
    first_unit = min(store.batches_per_block, cfg.steps - start)
    for step in range(start, cfg.steps):
        batch = store.batch(step)
        for run in runs:
            if step >= run.start:
                run.step(batch, step)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            now = time.perf_counter()
            extra = dict(epoch=store.epoch_of(step // store.batches_per_block)[0] + 1, time=round(time.time(), 3),
                         elapsed_s=round(now - t0, 3),
                         tokens_per_s=round((step + 1 - clock["step"]) * cfg.batch_size / max(now - clock["t"], 1e-9)))
            clock.update(t=now, step=step + 1)
            lasts = [run.log(step, extra) for run in runs if step >= run.start]
            if lasts:
                bar.set_postfix(L0=f"{sum(m['l0'] for m in lasts) / len(lasts):.1f}",
                                FVU=f"{sum(m['fvu'] for m in lasts) / len(lasts):.3f}",
                                dead=f"{sum(m['dead_frac'] for m in lasts) / len(lasts):.3f}",
                                tok_s=f"{extra['tokens_per_s']:,}")
        bar.update(1)
        if rank == 0 and step + 1 - start == first_unit:
            estimate.done(first_unit)
        if rank == 0 and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps):
            for run in runs:
                if step >= run.start:
                    run.checkpoint(step + 1)
    for run in runs:
        run.check_finite()
    bar.close()
    for run in runs:
        run.finish(rank)
    if rank == 0 and cfg.layers is not None and not cfg.clt:
        write_set_manifest(out, "transcoders" if cfg.hook_out else "saes", model.cfg.model_name, cfg.hook,
                           cfg.hook_out, {layer: jout.name for layer, (_, jout) in zip(cfg.layers, jobs)})
        if cfg.hook_out:
            save_circuit_tracer(TranscoderSet({layer: r.sae for layer, r in zip(cfg.layers, runs)},
                                              model.cfg.model_name), out)
    first = runs[0]
    finals = {layer: r.last for layer, r in zip(cfg.layers or [], runs)}
    if cfg.clt:  # one dictionary: each layer's line is the pooled line with that layer's FVU, L0 and dead share
        pooled = {k: v for k, v in first.last.items() if not k.endswith("_per_layer")}
        finals = {layer: {**pooled, "fvu": f, "l0": l0, "dead_frac": dead} for layer, f, l0, dead in
                  zip(cfg.layers, *(first.last.get(f"{k}_per_layer", []) for k in ("fvu", "l0", "dead")))}
    return TrainResult(first.sae, cfg.steps, cfg.steps * cfg.batch_size, time.perf_counter() - t0, first.last, start,
                       out, {layer: r.sae for layer, r in zip(cfg.layers or [], runs)}, finals,
                       {**memory.to_dict(), "peak_gb": round(peak_rss_bytes() / 2**30, 3)})


def _span(layers: list[int] | None) -> str:
    if not layers:
        return ""
    if layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}-{layers[-1]}" if len(layers) > 1 else str(layers[0])
    return ",".join(map(str, layers))


def _new_sae(model, cfg: TrainConfig, x, y, store: ActivationStore, device: str) -> SAE:
    """An SAE or transcoder for ``cfg``, initialised from the sample ``x`` (and targets ``y``)."""
    sae = make_sae(SAEConfig(cfg.architecture, x.shape[-1], cfg.d_sae or 16 * x.shape[-1], hook_name=cfg.hook,
                             model_name=model.cfg.model_name, k=cfg.k, l1_coefficient=cfg.l1_coefficient,
                             l0_coefficient=cfg.l0_coefficient, hook_out=cfg.hook_out,
                             skip=bool(cfg.hook_out) and cfg.skip, train_corpus=corpus_id(cfg.corpus),
                             train_tokens_end=store.rows_used(cfg.steps) * cfg.seq_len)).to(device)
    if y is not None and y.shape[-1] != x.shape[-1]:
        raise InterpError(f"{cfg.hook_out} has width {y.shape[-1]} but {cfg.hook} has {x.shape[-1]}; a transcoder "
                          "here maps a width onto itself")
    sae.set_input_scale_(x)
    if y is not None:
        sae.set_output_scale_(y)
    if isinstance(sae, TopKSAE):
        sae.init_b_dec_(x, y)
    if sae.is_transcoder and sae.W_skip is not None:  # the linear part first: the latents then learn the rest
        sae.init_skip_(x, y)
    if isinstance(sae, JumpReLUSAE) and cfg.init_l0 > 0:
        sae.init_threshold_from_(x, cfg.init_l0)
    return sae


class _Run:
    """One dictionary's share of a run: its SAE or transcoder, optimiser, scheduler, dead-latent
    counters, checkpoint and metrics. Every run of a job steps on the same batch of one model pass."""

    def __init__(self, model, cfg: TrainConfig, out: Path, store: ActivationStore, sample: dict, resume: bool,
                 rank: int, world: int):
        out.mkdir(parents=True, exist_ok=True)
        self.cfg, self.out, self.store, self.rank, self.world = cfg, out, store, rank, world
        device = str(model.cfg.device)
        x, y = self.inputs(sample)
        torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
        if cfg.clt:
            sae = TrainableCLT(len(cfg.layers), x.shape[-1], cfg.d_sae or 4 * x.shape[-1], cfg.architecture, cfg.k,
                               cfg.l0_coefficient, cfg.skip, cfg.hook, cfg.hook_out, model.cfg.model_name,
                               first_layer=cfg.layers[0]).to(device)
            cfg = self.cfg = replace(cfg, lr=cfg.lr or default_lr(sae.cfg.d_sae))
            sae.init_from_(x, y, cfg.init_l0)
            sae.clt.train_corpus = corpus_id(cfg.corpus)
            sae.clt.train_tokens_end = store.rows_used(cfg.steps) * cfg.seq_len
        else:
            sae = _new_sae(model, cfg, x, y, store, device)
            cfg = self.cfg = replace(cfg, lr=cfg.lr or default_lr(sae.cfg.d_sae))  # what train_config.json records
        on_gpu = device.startswith("cuda")
        graphs = cfg.cuda_graphs and on_gpu and world == 1 and not cfg.compile
        self.opt = make_optimizer(sae, cfg.lr, device, graphs)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: _lr_factor(s, cfg))
        self.since_fired = torch.zeros(getattr(sae, "latent_shape", sae.cfg.d_sae), dtype=torch.long, device=device)
        self.ckpt = out / "checkpoint.pt"
        self.start, self.aux_on = 0, None
        if resume and self.ckpt.exists():
            state = torch.load(self.ckpt, map_location=device, weights_only=True)
            check_same_run(self.ckpt, state, cfg)
            sae.load_state_dict(state["sae"])
            self.opt.load_state_dict(state["opt"])
            self.sched.load_state_dict(state["sched"])
            self.since_fired = state["since_fired"].to(device)
            self.start, self.aux_on = int(state["step"]), state.get("aux_on")
        objective: nn.Module = _Objective(sae)
        if world > 1:
            objective = nn.parallel.DistributedDataParallel(
                objective, device_ids=None if not on_gpu else [torch.device(device).index or 0])
        if cfg.compile:
            objective = torch.compile(objective)
        self.sae = sae
        self.train_step = TrainStep(objective, sae, self.opt, cfg.grad_clip, bf16=on_gpu, graphs=graphs)
        self.window = cfg.dead_window()
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)  # first step with a non-finite loss
        self.last: dict = {}
        self.res = None
        self.xy: tuple = ()

    def inputs(self, batch: dict) -> tuple:
        """(input, target or None) of the dictionary from a batch; a CLT's stacked over its layers [n, L, d]."""
        cfg = self.cfg
        if cfg.clt:
            return tuple(torch.stack([batch[t.replace("{l}", str(layer))] for layer in cfg.layers], 1)
                         for t in (cfg.hook, cfg.hook_out))
        return batch[cfg.hook], batch[cfg.hook_out] if cfg.hook_out else None

    def step(self, batch: dict, step: int) -> None:
        cfg, rank, world = self.cfg, self.rank, self.world
        x, y = self.inputs(batch)
        if world > 1:
            x = x[rank::world]
            y = y[rank::world] if y is not None else None
        dead = self.since_fired * cfg.batch_size >= self.window
        if self.aux_on is None or step % DEAD_CHECK_EVERY == 0:
            self.aux_on = bool(dead.any())
        res = self.train_step(x, step / cfg.steps, dead if self.aux_on else None, y)
        self.bad_step = torch.where((self.bad_step < 0) & ~torch.isfinite(res.loss.detach()), step, self.bad_step)
        self.sched.step()
        with torch.no_grad():
            fired = (res.output.feature_acts > 0).any(0)
            if world > 1:
                fired = fired.to(torch.int32)
                dist.all_reduce(fired, op=dist.ReduceOp.MAX)
                fired = fired.bool()
            self.since_fired = torch.where(fired, torch.zeros_like(self.since_fired), self.since_fired + 1)
        self.res, self.xy = res, (x, y)

    def check_finite(self) -> None:  # a host sync: only at logging and checkpoint steps
        if int(self.bad_step) >= 0:
            raise InterpError(f"{self.cfg.hook}: the loss became non-finite at step {int(self.bad_step)}; stopped, "
                              f"keeping the last good checkpoint ({self.ckpt if self.ckpt.exists() else 'none yet'}); "
                              "try a lower lr")

    def log(self, step: int, extra: dict) -> dict:
        self.check_finite()
        x, y = self.xy
        self.last = _metrics(self.res, x, y, self.sae, self.since_fired, self.window, step, self.cfg, self.opt)
        self.last.update(extra)
        if self.rank == 0:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(self.last) + "\n")
        return self.last

    def checkpoint(self, step: int) -> None:
        self.check_finite()
        save_checkpoint(self.ckpt, self.sae, self.opt, self.sched, self.since_fired, step, self.cfg, self.aux_on)

    def finish(self, rank: int) -> None:
        cfg, sae = self.cfg, self.sae
        if isinstance(sae, BatchTopKSAE):  # the inference threshold from the final weights (every rank alike)
            last_steps = range(max(0, cfg.steps - CALIBRATION_BATCHES), cfg.steps)
            sae.calibrate_threshold_([self.store.batch(i)[cfg.hook] for i in last_steps])
        if rank == 0:
            if cfg.clt:
                save_circuit_tracer_clt(sae.folded(), self.out)
            else:
                save_sae(sae, self.out)
            (self.out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=1) + "\n")


def _metrics(res, x, y, sae, since_fired, window, step, cfg, opt) -> dict:
    with torch.no_grad():
        y = x if y is None else y  # FVU of the target: the input for an SAE, the MLP output for a transcoder
        xs = y.float() * sae.target_scale
        err = ((y.float() - res.output.x_hat.float()) * sae.target_scale).pow(2)
        var = (xs - xs.mean(0)).pow(2)
        active = (res.output.feature_acts > 0).float().sum(-1)  # [batch] or, for a CLT, [batch, L]
        dead = (since_fired * cfg.batch_size >= window).float()  # [F] or [L, F]
        per_layer = {}
        if y.dim() == 3:  # a CLT's layer-stacked targets: each layer's FVU, L0 and dead share besides the pooled
            per_layer = {"fvu_per_layer": (err.sum((0, 2)) / var.sum((0, 2)).clamp_min(1e-12)).tolist(),
                         "l0_per_layer": active.mean(0).tolist(), "dead_per_layer": dead.mean(-1).tolist()}
        return per_layer | {"step": step + 1, "tokens": (step + 1) * cfg.batch_size, "loss": res.loss.item(),
                "mse": res.mse.item(), "sparsity": res.sparsity.item(), "aux": res.aux.item(),
                "l0": active.mean().item(), "fvu": (err.sum() / var.sum().clamp_min(1e-12)).item(),
                "dead_frac": dead.mean().item(), "lr": float(opt.param_groups[0]["lr"])}
