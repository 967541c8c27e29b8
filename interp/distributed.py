"""Which device each process of a ``torchrun`` job uses, and joining the job.

``torchrun`` starts one process per GPU and tells each its place through the
environment: ``RANK`` (global), ``WORLD_SIZE`` and ``LOCAL_RANK`` (its index on this
machine). Each process must put its model, activations and SAE on ``cuda:LOCAL_RANK``
and make that the current device before NCCL starts; a bare ``"cuda"`` means
``cuda:0`` in every process, so all ranks would share one GPU. The rule lives in one
pure function, :func:`local_device`, so that it can be tested without several GPUs, and
every job that runs under ``torchrun`` (SAE training, feature extraction) uses it.
"""

from __future__ import annotations

import os
from typing import Mapping

import torch
import torch.distributed as dist

from interp.errors import InterpError

__all__ = ["init_distributed", "local_device", "rank_world"]


def local_device(requested: str | None = None, env: Mapping[str, str] | None = None,
                 cuda_devices: int | None = None) -> str:
    """The device this process should use.

    ``requested`` is what the user asked for (``None``: a GPU if there is one). Outside a
    ``torchrun`` job that is returned as it is (``None`` becomes ``"cuda"`` or ``"cpu"``). Inside
    one, a CUDA request without an index becomes ``cuda:LOCAL_RANK``; an explicit index is kept
    only where it equals ``LOCAL_RANK``, since two ranks on one GPU is a mistake, not a choice.
    """
    env = os.environ if env is None else env
    n = torch.cuda.device_count() if cuda_devices is None else cuda_devices
    device = requested or ("cuda" if n > 0 else "cpu")
    if "LOCAL_RANK" not in env or not device.startswith("cuda"):
        return device
    local = int(env["LOCAL_RANK"])
    if local >= n:
        raise InterpError(f"rank with LOCAL_RANK={local} needs cuda:{local}, but this machine has {n} CUDA "
                          "device(s); start torchrun with --nproc-per-node at most the GPU count")
    index = torch.device(device).index
    if index is not None and index != local:
        raise InterpError(f"--device {device} under torchrun: local rank {local} must use cuda:{local}; "
                          "pass --device cuda and each rank takes its own GPU")
    return f"cuda:{local}"


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a distributed job."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: str | None = None) -> bool:
    """Join a ``torchrun`` job if this process is in one: make this rank's GPU current, then start
    the process group (NCCL on GPU, gloo on CPU). Returns whether a job is running."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        device = local_device(device)
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        return True
    return dist.is_initialized()
