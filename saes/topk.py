"""TopK SAE (Gao et al. 2024, "Scaling and evaluating sparse autoencoders").

    f = ReLU(TopK_k((x' − b_dec) W_enc + b_enc)),   L = ‖x' − x̂'‖² + (1/32)·L_aux

Decoder rows stay at unit norm: the trainer removes each row's gradient component
along the row (:meth:`remove_parallel_grad_`) and renormalises after the step
(:meth:`normalize_decoder_`). b_dec starts at the geometric median of a sample
(:meth:`init_b_dec_`). L_aux (§A.2) reconstructs the residual x' − x̂' from the top
``aux_k`` dead latents, so they receive gradient and revive.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from saes.base import SAE, SAEOutput

__all__ = ["TopKSAE", "geometric_median", "topk_mask"]


def geometric_median(points: Tensor, iters: int = 100, eps: float = 1e-6) -> Tensor:
    """Weiszfeld's algorithm."""
    y = points.mean(0)
    for _ in range(iters):
        w = 1 / (points - y).norm(dim=1).clamp_min(eps)
        y_new = (w[:, None] * points).sum(0) / w.sum()
        if (y_new - y).norm() < eps * max(1.0, y.norm().item()):
            return y_new
        y = y_new
    return y


def topk_mask(pre: Tensor, k: int) -> Tensor:
    vals, idx = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))


def _dense_decode_is_faster(pre: Tensor) -> bool:
    return pre.is_cuda and pre.dtype in (torch.bfloat16, torch.float16)


class TopKSAE(SAE):
    def activation(self, pre: Tensor) -> Tensor:
        return topk_mask(pre, self.cfg.k)

    def forward(self, x: Tensor) -> SAEOutput:
        """x̂ sums the k chosen decoder rows. In fp32 the decode is sparse (``embedding_bag``), k/d_sae
        of the dense work forward and backward (Gao et al. 2024 §D.2 use a sparse kernel for the same
        reason). Under bf16/fp16 autocast on a GPU the dense ``f @ W_dec`` runs on tensor cores in a
        fraction of the time ``embedding_bag``'s gather and atomic scatter take, so it is used there."""
        if type(self).activation is not TopKSAE.activation:  # BatchTopK's batch-level choice
            return super().forward(x)
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.cfg.k, dim=-1)
        vals = torch.relu(vals)
        f = torch.zeros_like(pre).scatter(-1, idx, vals)
        if _dense_decode_is_faster(pre):
            rec = f @ self.W_dec.to(pre.dtype)
        else:
            rec = F.embedding_bag(idx.reshape(-1, idx.shape[-1]), self.W_dec,
                                  per_sample_weights=vals.reshape(-1, vals.shape[-1]).to(self.W_dec.dtype),
                                  mode="sum").view(*idx.shape[:-1], -1)
        return SAEOutput(self.finish(rec, x), f, pre)

    def aux_loss(self, target: Tensor, out: SAEOutput, dead: Tensor | None) -> Tensor:
        """AuxK (Gao et al. 2024 §A.2): the top ``aux_k`` dead latents reconstruct the residual. No host
        sync: latents that are not dead are masked to −inf, which the ReLU of the chosen values turns
        into 0 (so fewer than ``aux_k`` dead latents use only the dead ones), and the term is zero when
        none is dead. The trainer passes ``dead=None`` while it knows none is."""
        if dead is None:
            return out.x_hat.new_zeros(())
        dead = dead.to(out.pre_acts.device)
        residual = (target.to(out.x_hat.dtype) - out.x_hat) * self.target_scale
        dead_pre = out.pre_acts.masked_fill(~dead, float("-inf"))
        vals, idx = dead_pre.topk(min(self.cfg.aux_k, self.cfg.d_sae), dim=-1)
        vals = torch.relu(vals)
        rec = F.embedding_bag(idx, self.W_dec, per_sample_weights=vals.to(self.W_dec.dtype), mode="sum")
        err = (residual - rec.to(residual.dtype)).pow(2).sum(-1).mean()
        return self.cfg.aux_coefficient * err * dead.any()

    @torch.no_grad()
    def init_b_dec_(self, sample: Tensor, target: Tensor | None = None) -> None:
        """b_dec at the geometric median of the (scaled) targets; a transcoder's b_in at its inputs'."""
        if self.is_transcoder:
            self.b_in.copy_(geometric_median(sample.to(self.b_in.dtype) * self.input_scale))
            sample = sample if target is None else target
            self.b_dec.copy_(geometric_median(sample.to(self.b_dec.dtype) * self.output_scale))
        else:
            self.b_dec.copy_(geometric_median(sample.to(self.b_dec.dtype) * self.input_scale))

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        if self.W_dec.grad is None:
            return
        unit = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-12)
        self.W_dec.grad -= (self.W_dec.grad * unit).sum(1, keepdim=True) * unit
