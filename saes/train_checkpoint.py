"""A training run's checkpoint: what it holds, how it is written, and which options must match to resume it.

``DIR/checkpoint.pt`` holds the dictionary's weights, the optimiser and scheduler states, the dead-latent
counters, the step and the run's options as :func:`comparable` records them. It is written atomically and
read with ``weights_only=True``. A checkpoint written with other options is refused, naming them, so a
resumed run is the same run: batch ``i`` is a pure function of ``i`` (:mod:`saes.activations`), and the
options left out of the comparison (logging and checkpoint intervals, compilation, CUDA graphs, epochs)
do not change any step's result. ``cfg`` is a :class:`saes.train.TrainConfig`.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from interp.cache import atomic_path
from interp.errors import InterpError

__all__ = ["check_same_run", "comparable", "save_checkpoint"]


def check_same_run(ckpt: Path, state: dict, cfg, compare_lr: bool = True) -> None:
    """Refuse a checkpoint written with other options, naming them. Without ``compare_lr`` the
    learning rate is left out: it is the width's default, known only once the model gives d_in."""
    saved, want = dict(state.get("config") or {}), comparable(cfg)
    if not compare_lr:
        saved.pop("lr", None)
        want.pop("lr", None)
    differ = sorted(k for k in set(saved) | set(want) if saved.get(k) != want.get(k))
    if differ:
        raise InterpError(f"{ckpt} belongs to a different run ({', '.join(differ)} differ); use another --out "
                          "or remove the checkpoint")


def comparable(cfg) -> dict:
    """The options that decide every step's result, as a checkpoint records them."""
    d = asdict(cfg)
    d["block_rows"] = cfg.resolved_block_rows()  # 0 means the default for the hooks: compare what it resolves to
    if not d["hook_out"]:  # an SAE: checkpoints written before transcoders existed still resume
        for k in ("hook_out", "skip", "layers"):
            d.pop(k)
    if not d["clt"]:  # and per-layer sets written before CLTs existed
        d.pop("clt")
    # epochs only bounds the run: batch i is the same for any number of epochs that reaches it
    for k in ("checkpoint_every", "log_every", "compile", "cuda_graphs", "activation_cache", "epochs"):
        d.pop(k)
    if d["init_seed"] is None:
        d.pop("init_seed")  # the default: checkpoints written before the field existed still resume
    return d


def save_checkpoint(path: Path, sae, opt, sched, since_fired, step: int, cfg, aux_on: bool) -> None:
    state = {"sae": sae.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
             "since_fired": since_fired.cpu(), "step": step, "aux_on": aux_on, "config": comparable(cfg)}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
