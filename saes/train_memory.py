"""What a training run will hold in memory, estimated before it harvests, and refused when it will not fit.

A run holds, besides the process as it stands (the runtime and the model, read as its resident memory now):

- **the activation blocks**: ``block_rows`` corpus rows of every harvested hook in fp32 (``--block-rows``
  bounds it). Two at the peak: the last batch still holds a view of the block in use while the next is
  built; with an activation cache, the prefetched shards as well;
- **the harvest's forward**: what the model holds while it runs one micro-batch (about two d_model-wide
  tensors per token and layer on a TransformerBridge, measured), and one hook's copy;
- **the sample** the dictionaries are initialised from (8,192 tokens of every hook, or block 0's tokens
  if fewer);
- **the dictionaries**: weights, gradients, Adam's two moments and the optimiser's temporaries (5 × the
  parameters in fp32), and one step's activations (a per-layer set's dictionaries step one after another,
  so one at a time; a CLT's from :func:`saes.clt_training.clt_training_bytes`).

Measured on SmolLM2 (30 layers, 576 latents each, batch 1,024, 19-row blocks): estimate 2.85 GB, peak
resident 3.27 GB; before the store dropped its extra copies and the harvest stopped short of the
unembedding, the same job peaked at 4.31 GB.

On a GPU the dictionaries live in device memory, and a block too where it fits (a quarter of the free
device memory), so only what stays on the host is checked against the host's free memory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from interp.errors import InterpError
from interp.host_memory import available_bytes, rss_bytes
from saes.activations import PREFETCH_BLOCKS
from saes.clt_training import clt_training_bytes

__all__ = ["TrainMemory", "check_training_memory", "training_memory"]

GB = 2**30
SAMPLE_TOKENS = 8192
USABLE = 0.9  # of the free memory a run may plan to take


@dataclass
class TrainMemory:
    """Bytes by part (see the module docstring); ``host`` is what the host must find free."""

    process: int
    block: int
    harvest: int
    sample: int
    dictionaries: int
    on_gpu: bool = False

    @property
    def host(self) -> int:
        return self.process + self.block + self.harvest + self.sample + (0 if self.on_gpu else self.dictionaries)

    def to_dict(self) -> dict:
        return {"estimate_gb": round(self.host / GB, 3), "process_gb": round(self.process / GB, 3),
                "block_gb": round(self.block / GB, 3), "harvest_gb": round(self.harvest / GB, 3),
                "sample_gb": round(self.sample / GB, 3), "dictionaries_gb": round(self.dictionaries / GB, 3),
                "dictionaries_on": "gpu" if self.on_gpu else "host"}

    def line(self) -> str:
        d = self.to_dict()
        where = " (on the GPU)" if self.on_gpu else ""
        return (f"memory estimate {d['estimate_gb']:.1f} GB: process and model {d['process_gb']:.1f}, activation "
                f"blocks {d['block_gb']:.1f} (+{d['harvest_gb']:.1f} while harvesting), sample {d['sample_gb']:.1f}, "
                f"dictionaries with Adam {d['dictionaries_gb']:.1f}{where}")


def _dictionary_bytes(cfg, d: int) -> int:
    if cfg.clt:
        return clt_training_bytes(len(cfg.layers), d, cfg.d_sae or 4 * d, cfg.skip, cfg.batch_size)
    F = cfg.d_sae or 16 * d
    params = 2 * d * F + F + 2 * d + (d * d + d if cfg.hook_out and cfg.skip else 0)
    n = len(cfg.layers) if cfg.layers is not None else 1
    step = cfg.batch_size * (5 * F + 4 * d)  # pre-activations, codes, their gradients and AuxK's choice
    return 4 * (5 * params * n + step)


def training_memory(cfg, d_model: int, tokens_per_block: int, model_batch: int, seq_len: int,
                    device: str = "cpu", process: int | None = None) -> TrainMemory:
    """The estimate for ``cfg`` (a :class:`saes.train.TrainConfig`) on a model of width ``d_model``; the
    harvest runs the model's blocks up to the deepest hooked layer."""
    hooks = cfg.hooks()
    per_token = len(hooks) * d_model * 4
    block = 2 * tokens_per_block * per_token
    layers = 1 + max((int(h.split(".")[1]) for h in hooks if h.startswith("blocks.")), default=0)
    rows = min(model_batch, max(1, -(-tokens_per_block // max(seq_len - 1, 1))))
    harvest = tokens_per_block * d_model * 4 + rows * (seq_len + 1) * layers * 2 * d_model * 4
    if cfg.activation_cache:
        harvest += PREFETCH_BLOCKS * block // 2
    on_gpu = device.startswith("cuda")
    if on_gpu:
        import torch

        free, _ = torch.cuda.mem_get_info(torch.device(device))
        if block // 2 <= free // 4:  # the store keeps it on the device (saes.activations._fits_on_device)
            block, harvest = 0, 0
    return TrainMemory(process if process is not None else (rss_bytes() or 0), block, harvest,
                       min(SAMPLE_TOKENS, tokens_per_block) * per_token, _dictionary_bytes(cfg, d_model), on_gpu)


def check_training_memory(memory: TrainMemory, available: int | None = None) -> None:
    """Refuse, in one line naming what to lower, a run whose host estimate exceeds :data:`USABLE` of the free
    memory (the process's own resident memory counts as held, not needed). ``INTERP_TRAIN_MEMORY_GB`` sets
    the free memory by hand (a shared machine)."""
    by_hand = os.environ.get("INTERP_TRAIN_MEMORY_GB")
    if available is None and by_hand:
        try:
            available = int(float(by_hand) * GB)
        except ValueError:
            raise InterpError(f"INTERP_TRAIN_MEMORY_GB must be a number of gigabytes, not {by_hand!r}") from None
    free = available_bytes() if available is None else available
    if free is None:
        return
    need = memory.host - memory.process
    if need > USABLE * free:
        d = memory.to_dict()
        raise InterpError(f"this run needs about {need / GB:.1f} GB more memory but {free / GB:.1f} GB is free "
                          f"(activation block {d['block_gb']:.1f} GB, dictionaries with Adam "
                          f"{d['dictionaries_gb']:.1f} GB): lower --block-rows, --d-sae or --batch-size, or train "
                          "fewer layers at once")

