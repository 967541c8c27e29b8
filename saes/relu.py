"""ReLU SAE with a decoder-norm-weighted L1 penalty (Anthropic, "Circuits Updates", April 2024).

    f = ReLU((x' − b_dec) W_enc + b_enc),   L = ‖x' − x̂'‖² + λ Σ_j f_j ‖W_dec,j‖

W_dec has no unit-norm constraint: the penalty weights each latent by its decoder norm
instead. Decoder rows start as random directions of norm 0.1 with W_enc = W_decᵀ, and
λ warms up linearly over the first 5% of training.
"""

from __future__ import annotations

import torch
from torch import Tensor

from saes.base import SAE, SAEOutput, warmup_ramp

__all__ = ["L1_WARMUP", "ReluSAE"]

L1_WARMUP = 0.05  # fraction of training over which λ rises from 0


class ReluSAE(SAE):
    def reset_parameters(self) -> None:
        with torch.no_grad():
            d = torch.randn_like(self.W_dec)
            self.W_dec.copy_(0.1 * d / d.norm(dim=1, keepdim=True))
            self.W_enc.copy_(self.W_dec.T)

    def activation(self, pre: Tensor) -> Tensor:
        return torch.relu(pre)

    def sparsity_loss(self, out: SAEOutput, progress: float) -> Tensor:
        lam = self.cfg.l1_coefficient * warmup_ramp(progress, L1_WARMUP)
        return lam * (out.feature_acts * self.W_dec.norm(dim=1)).sum(-1).mean()
