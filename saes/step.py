"""One SAE training step (loss, backward, clipping, Adam, the decoder constraint), eager or as a CUDA graph.

At d_in 576 and a batch of 4096 the step's kernels take about 1.5 ms of GPU time, but
launching its ~70 kernels one by one from Python takes longer: on an H100 the eager
bf16 step is bound by the host, not the GPU. :class:`TrainStep` captures the whole step,
optimiser included, as a CUDA graph and replays it, so each step is one launch (the
"whole-network capture" recipe of the PyTorch CUDA-graphs notes):

- the batch, the training progress and the dead-latent mask are copied into static
  input tensors before each replay; the loss and the SAE's output are static outputs,
  valid until the next step;
- the learning rate is a 0-d tensor on the device that the scheduler updates in place,
  and Adam is ``capturable``, so neither is frozen at its value on the capturing step;
- with and without AuxK (``dead`` given or ``None``) are two graphs, each captured after
  ``warmup`` eager steps of its own on a side stream (real training steps, not extra
  ones), so lazily initialised state exists before capture.

Replaying runs the same kernels on the same shapes as the eager step, so the weights
equal the eager run's (a CUDA test checks this). Graphs need one process and no
``torch.compile``; otherwise, and on the CPU, the step is eager.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saes.base import SAE, SAELoss
from saes.topk import TopKSAE

__all__ = ["TrainStep", "make_optimizer", "optimizer_step_"]


def optimizer_step_(sae: SAE, opt: torch.optim.Optimizer, loss: torch.Tensor, grad_clip: float) -> None:
    """Backward and one optimiser step, clipped; TopK decoder rows stay at unit norm (the gradient
    along each row is removed before the step and the rows renormalised after, Gao et al. 2024)."""
    unit = isinstance(sae, TopKSAE) or getattr(sae, "unit_decoder", False)  # a TopK CLT's decoders too
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if unit:
        sae.remove_parallel_grad_()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), grad_clip)
    opt.step()
    if unit:
        sae.normalize_decoder_()


class TrainStep:
    """``step(x, progress, dead) -> SAELoss``: one training step of ``objective`` (the SAE's loss,
    possibly wrapped in DDP or compiled), under bf16 autocast when ``bf16``; captured as CUDA graphs
    when ``graphs`` (the optimiser must then be ``capturable`` with a tensor learning rate:
    :func:`make_optimizer`)."""

    def __init__(self, objective, sae: SAE, opt: torch.optim.Optimizer, grad_clip: float, bf16: bool = False,
                 graphs: bool = False, warmup: int = 3):
        self.objective, self.sae, self.opt, self.grad_clip = objective, sae, opt, grad_clip
        self.bf16, self.graphs, self.warmup = bf16, graphs, warmup
        self._eager_done: dict[bool, int] = {}
        self._captured: dict[bool, tuple] = {}

    def __call__(self, x: Tensor, progress: float, dead: Tensor | None, target: Tensor | None = None) -> SAELoss:
        """``target``: a transcoder's (None: the SAE reconstructs ``x``)."""
        if not self.graphs:
            return self._eager(x, progress, dead, target)
        key = dead is not None
        if self._eager_done.get(key, 0) < self.warmup:
            self._eager_done[key] = self._eager_done.get(key, 0) + 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                res = self._eager(x, progress, dead, target)
            torch.cuda.current_stream().wait_stream(side)
            return res
        if key not in self._captured:
            self._captured[key] = self._capture(x, progress, dead, target)
        graph, static_x, static_progress, static_dead, static_target, res = self._captured[key]
        static_x.copy_(x)
        if target is not None:
            static_target.copy_(target)
        static_progress.fill_(progress)
        if dead is not None:
            static_dead.copy_(dead)
        graph.replay()
        return res

    def _eager(self, x, progress, dead, target=None) -> SAELoss:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            res = self.objective(x, progress, dead, target)
        optimizer_step_(self.sae, self.opt, res.loss, self.grad_clip)
        # Detached: a result that kept its autograd graph alive would keep the parameters' gradient
        # accumulators tied to the warm-up stream into the capture (and hold the graph's memory).
        return SAELoss(res.loss.detach(), res.mse.detach(), res.sparsity.detach(), res.aux.detach(),
                       type(res.output)(*(t.detach() for t in res.output)))

    def _capture(self, x, progress, dead, target):
        static_x = x.clone()
        static_target = target.clone() if target is not None else None
        static_progress = torch.tensor(float(progress), device=x.device)
        static_dead = dead.clone() if dead is not None else None
        graph = torch.cuda.CUDAGraph()
        self.opt.zero_grad(set_to_none=True)  # gradients are allocated inside the graph's pool
        with torch.cuda.graph(graph):
            res = self._eager(static_x, static_progress, static_dead, static_target)
        return graph, static_x, static_progress, static_dead, static_target, res


def make_optimizer(sae: SAE, lr: float, device: str, graphs: bool) -> torch.optim.Adam:
    """Adam as the trainer uses it: fused on a GPU; for CUDA graphs also capturable, with the
    learning rate a device tensor that the scheduler updates in place."""
    on_gpu = device.startswith("cuda")
    return torch.optim.Adam(sae.parameters(), lr=torch.tensor(lr, device=device) if graphs else lr,
                            betas=(0.9, 0.999), fused=on_gpu or None, capturable=graphs)
