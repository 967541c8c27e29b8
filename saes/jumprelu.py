"""JumpReLU SAE (Rajamanoharan et al. 2024, "Jumping Ahead").

    f_j = pre_j · H(pre_j − θ_j),   L = ‖x' − x̂'‖² + λ Σ_j H(pre_j − θ_j)

θ = exp(log_threshold) is trained through straight-through estimators with a
rectangle kernel K of bandwidth ε (§3, Eqs. 9–11):

    ∂f/∂θ ≈ −(θ/ε) K((pre − θ)/ε),   ∂H/∂θ ≈ −(1/ε) K((pre − θ)/ε)
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor, nn

from saes.base import SAE, SAEOutput, warmup_ramp

__all__ = ["JumpReLUSAE", "L0_WARMUP", "jump_relu", "jump_step"]

L0_WARMUP = 0.05


def _rect(u: Tensor) -> Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        d_pre = g * (pre > threshold).to(g.dtype)
        d_thr = -(threshold / eps) * _rect((pre - threshold) / eps) * g
        return d_pre, d_thr.sum_to_size(threshold.shape), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, bandwidth):
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        d_thr = -(1.0 / eps) * _rect((pre - threshold) / eps) * g
        return torch.zeros_like(pre), d_thr.sum_to_size(threshold.shape), None


def jump_relu(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """pre · H(pre − θ) with the straight-through gradient to θ; ``threshold`` broadcasts against ``pre``
    (``[d_sae]``, or ``[layers, 1, d_sae]`` for a CLT's layer-major pre-activations)."""
    return _JumpReLU.apply(pre, threshold, bandwidth)


def jump_step(pre: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
    """H(pre − θ), the L0 penalty's count, with the straight-through gradient to θ."""
    return _Step.apply(pre, threshold, bandwidth)


class JumpReLUSAE(SAE):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.log_threshold = nn.Parameter(torch.full((cfg.d_sae,), math.log(cfg.jumprelu_init_threshold),
                                                     dtype=self.W_enc.dtype))

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activation(self, pre: Tensor) -> Tensor:
        return jump_relu(pre, self.threshold, self.cfg.jumprelu_bandwidth)

    def sparsity_loss(self, out: SAEOutput, progress: float) -> Tensor:
        lam = self.cfg.l0_coefficient * warmup_ramp(progress, L0_WARMUP)
        return lam * jump_step(out.pre_acts, self.threshold, self.cfg.jumprelu_bandwidth).sum(-1).mean()

    @torch.no_grad()
    def init_threshold_from_(self, sample: Float[Tensor, "batch d_in"], l0: float) -> None:
        """θ_j = the (1 − l0/d_sae) quantile of latent j's pre-activations on ``sample``: every latent
        starts firing on the same fraction of tokens and the initial L0 is ``l0``. θ is trained in log
        space, and Adam moves log θ by about one learning rate per step, so from a fixed small θ a short
        run cannot reach the O(1) thresholds a sparse code needs (Anthropic's 2025 JumpReLU notes set
        the initial firing rate from data for the same reason)."""
        pre = self.pre_acts(sample)
        rank = max(1, min(pre.shape[0], round(pre.shape[0] * (1 - l0 / self.cfg.d_sae))))
        theta = pre.kthvalue(rank, dim=0).values.clamp_min(self.cfg.jumprelu_init_threshold)
        self.log_threshold.copy_(theta.log())

    def extra_tensors(self) -> dict[str, Tensor]:
        return {**super().extra_tensors(), "threshold": self.threshold.detach()}

    @torch.no_grad()
    def load_extra_tensors_(self, tensors: dict[str, Tensor]) -> None:
        super().load_extra_tensors_(tensors)
        self.log_threshold.copy_(tensors["threshold"].to(self.log_threshold.dtype).clamp_min(1e-12).log())
