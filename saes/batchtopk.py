"""BatchTopK SAE (Bussmann et al. 2024): the top ``k × batch`` activations over the whole batch.

In training a token may use more or fewer than k latents as long as the batch averages
k. For inference the batch dependence goes: a global threshold θ, the running mean
(EMA) of the smallest activation kept in each training batch, gives f = pre·H(pre − θ).
Saved files hold that inference form, a JumpReLU SAE with θ for every latent.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saes.jumprelu import JumpReLUSAE
from saes.topk import TopKSAE

__all__ = ["BatchTopKSAE", "THRESHOLD_EMA"]

THRESHOLD_EMA = 0.01


def _lowest_kept(vals: Tensor) -> Tensor | None:
    """The smallest positive value a batch-level top-k kept (None if it kept only zeros)."""
    kept = vals[vals > 0]
    return kept.min() if kept.numel() else None


class BatchTopKSAE(TopKSAE):
    def __init__(self, cfg):
        super().__init__(cfg)
        self.register_buffer("threshold", torch.full((), -1.0, dtype=self.W_enc.dtype))  # < 0: not yet set

    def activation(self, pre: Tensor) -> Tensor:
        if not self.training and self.threshold >= 0:
            return pre * (pre > self.threshold).to(pre.dtype)
        vals, idx = self._batch_topk(pre)
        f = torch.zeros_like(pre).flatten().scatter(0, idx, vals).view_as(pre)
        if self.training:  # the EMA on the device, without a host sync (torch.where, not `if`)
            with torch.no_grad():
                low = torch.where(vals > 0, vals, torch.inf).min().to(self.threshold.dtype)
                ema = torch.where(self.threshold < 0, low, torch.lerp(self.threshold, low, THRESHOLD_EMA))
                self.threshold.copy_(torch.where(torch.isfinite(low), ema, self.threshold))
        return f

    def _batch_topk(self, pre: Tensor) -> tuple[Tensor, Tensor]:
        """The k × batch largest ReLU'd pre-activations over the whole batch, and their flat indices."""
        flat = torch.relu(pre).flatten()
        return flat.topk(min(self.cfg.k * pre.shape[0], flat.numel()))

    @torch.no_grad()
    def calibrate_threshold_(self, batches: list[Tensor]) -> float:
        """θ = the mean, over ``batches``, of the smallest activation a batch-level top k × batch keeps,
        with the current weights. The trainer calls it at the end: the running EMA still carries the
        early steps (0.99¹²² ≈ 0.29 of the first batch's value after a 122-step run), which left
        inference L0 at a third of k in short runs."""
        lows = [low for x in batches if (low := _lowest_kept(self._batch_topk(self.pre_acts(x))[0])) is not None]
        if lows:
            self.threshold.copy_(torch.stack(lows).mean().to(self.threshold.dtype))
        return float(self.threshold)

    def to_jumprelu(self) -> JumpReLUSAE:
        """The inference-time SAE: same weights, θ on every latent."""
        from dataclasses import replace

        out = JumpReLUSAE(replace(self.cfg, architecture="jumprelu"))
        out.load_state_dict({k: v for k, v in self.state_dict().items() if k != "threshold"}, strict=False)
        out.load_extra_tensors_({"threshold": self.threshold.clamp_min(1e-12).expand(self.cfg.d_sae)})
        return out
