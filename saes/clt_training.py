"""A cross-layer transcoder as the trainer trains it: :class:`saes.clt.CrossLayerTranscoder` with per-layer
scales, its loss, its initialisation from data, and the fold back to raw units for saving.

Inputs and targets are layer-stacked, ``x [batch, L, d]`` (each layer's MLP input) and ``y [batch, L, d]``
(each MLP's output). With per-layer scales s_l and t_l (E‖s_l·x_l‖ = E‖t_l·y_l‖ = √d over the first
sample),

    pre_i = (s_i·x_i) W_enc[i] + b_enc[i],   f_i = σ(pre_i)
    t_l·ŷ_l = Σ_{i ≤ l} f_i W_dec[i][:, l − i] + b_dec[l] + (s_l·x_l) W_skip[l]ᵀ
    loss = Σ_l ‖t_l·y_l − t_l·ŷ_l‖²  (mean over tokens, summed over output layers)
           + λ Σ_{i,j} H(pre_ij − θ_ij)             (JumpReLU: the straight-through L0 of saes.jumprelu)
           + AuxK on each layer's own output         (TopK: dead latents reconstruct their layer's residual)

σ is JumpReLU or TopK with k per layer, so a CLT's L0 per layer matches a per-layer set's at the same k.
A TopK feature's decoders into all the layers it writes are one unit vector (Gao et al.'s row
constraint over the concatenation). W_skip starts at each layer's ridge least-squares map, b_dec at the
targets' mean, and the encoders small (the per-layer trainer's ``init_skip_``, for the same reason).

The trainer (:mod:`saes.train`) drives this module as it drives an SAE: ``loss(x, progress, dead,
target)``, ``cfg.d_sae``, ``target_scale``, ``normalize_decoder_``; so resume, DDP, bf16 and CUDA graphs
apply unchanged. Decoder parameters grow as L(L+1)/2·F·d: :func:`clt_training_bytes` estimates what a run
holds so the trainer refuses, before harvesting, what will not fit.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from saes.base import SAELoss, SAEOutput, ridge_map, warmup_ramp
from saes.clt import CrossLayerTranscoder
from saes.jumprelu import L0_WARMUP, jump_relu, jump_step

__all__ = ["ARCHITECTURES", "TrainableCLT", "clt_parameter_count", "clt_training_bytes"]

ARCHITECTURES = ("jumprelu", "topk")
BANDWIDTH = 0.05
INIT_THRESHOLD = 0.01
AUX_K, AUX_COEFFICIENT = 512, 1 / 32


def clt_parameter_count(n_layers: int, d_model: int, d_sae: int, skip: bool) -> int:
    """Encoders L·d·F, decoders L(L+1)/2·F·d, biases and thresholds, skip maps L·d²."""
    L, d, F_ = n_layers, d_model, d_sae
    return L * d * F_ + L * (L + 1) // 2 * F_ * d + 2 * L * F_ + L * d + (L * d * d if skip else 0)


def clt_training_bytes(n_layers: int, d_model: int, d_sae: int, skip: bool, batch_size: int) -> int:
    """What training holds beyond the model and the activation blocks: weights, gradients, Adam's two
    moments and the optimiser's temporaries (5 × the parameters in fp32), and the step's [batch, L, F] pre-activations, codes and their
    gradients (4 of them) with the stacked [batch, L, d] inputs, targets and reconstructions (6)."""
    params = clt_parameter_count(n_layers, d_model, d_sae, skip)
    return 4 * (5 * params + batch_size * n_layers * (4 * d_sae + 6 * d_model))


class TrainableCLT(nn.Module):
    """``clt`` with the scales and the loss the trainer needs (module docstring)."""

    unit_decoder = False  # TopK sets it: saes.step keeps each feature's decoders at unit norm

    def __init__(self, n_layers: int, d_model: int, d_sae: int, architecture: str = "jumprelu", k: int = 16,
                 l0_coefficient: float = 1.0, skip: bool = True, hook_in: str = "blocks.{l}.ln2.hook_out",
                 hook_out: str = "blocks.{l}.hook_mlp_out", model_name: str = "", first_layer: int = 0):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f"a CLT is {' or '.join(ARCHITECTURES)}, not {architecture}")
        self.clt = CrossLayerTranscoder(n_layers, d_model, d_sae, skip, hook_in, hook_out, model_name,
                                        architecture=architecture, k=k, first_layer=first_layer)
        self.cfg = SimpleNamespace(d_sae=d_sae, d_in=d_model, architecture=architecture, k=k,
                                   l0_coefficient=l0_coefficient, hook_out=hook_out, n_layers=n_layers)
        self.unit_decoder = architecture == "topk"
        self.register_buffer("input_scale", torch.ones(n_layers))
        self.register_buffer("output_scale", torch.ones(n_layers))
        self.reset_parameters()

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.clt.n_layers, self.clt.d_sae

    @property
    def target_scale(self) -> Tensor:
        """[L, 1]: broadcasts against layer-stacked [batch, L, d] targets."""
        return self.output_scale[:, None]

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Random decoders with each feature's concatenation at unit norm; each encoder column along its
        feature's own-layer decoder, at unit norm."""
        for i, w in enumerate(self.clt.W_dec):
            w.normal_()
            w.div_(w.flatten(1).norm(dim=1)[:, None, None])
            own = w[:, 0]
            self.clt.W_enc[i].copy_((own / own.norm(dim=1, keepdim=True)).T)
        self.clt.log_threshold.fill_(math.log(INIT_THRESHOLD))

    # ------------------------------------------------------------------ forward and loss

    def forward(self, x: Tensor) -> SAEOutput:
        clt, L = self.clt, self.clt.n_layers
        xs = x.to(clt.W_enc.dtype).transpose(0, 1) * self.input_scale[:, None, None]  # [L, B, d]
        pre = torch.baddbmm(clt.b_enc[:, None, :], xs, clt.W_enc)  # [L, B, F]
        if self.cfg.architecture == "topk":
            vals, idx = pre.topk(self.cfg.k, dim=-1)
            vals = torch.relu(vals)
            f = torch.zeros_like(pre).scatter(-1, idx, vals)
        else:
            f = jump_relu(pre, clt.threshold[:, None, :], BANDWIDTH)
        rec = [clt.b_dec[layer].expand(x.shape[0], -1) for layer in range(L)]
        for i in range(L):  # layer i's features into layers i … L − 1 in one product
            w = clt.W_dec[i].flatten(1)  # [F, (L − i)·d]
            if self.cfg.architecture == "topk" and not (pre.is_cuda and pre.dtype != torch.float32):
                out = F.embedding_bag(idx[i], w, per_sample_weights=vals[i].to(w.dtype), mode="sum")
            else:
                out = f[i] @ w.to(f.dtype)
            for j, part in enumerate(out.unflatten(1, (L - i, clt.d_model)).unbind(1)):
                rec[i + j] = rec[i + j] + part
        y = torch.stack(rec, 1)  # [B, L, d], scaled space
        if clt.W_skip is not None:
            y = y + torch.bmm(xs, clt.W_skip.transpose(1, 2).to(xs.dtype)).transpose(0, 1).to(y.dtype)
        return SAEOutput(y / self.output_scale[:, None], f.transpose(0, 1), pre.transpose(0, 1))

    def loss(self, x: Tensor, progress: float = 1.0, dead: Tensor | None = None,
             target: Tensor | None = None) -> SAELoss:
        """``x``, ``target``: [batch, L, d]; ``dead``: [L, F]. Output codes are [batch, L, F]."""
        out = self(x)
        resid = (target.to(out.x_hat.dtype) - out.x_hat) * self.target_scale
        mse = resid.pow(2).sum(-1).sum(-1).mean()
        sparsity = out.x_hat.new_zeros(())
        aux = out.x_hat.new_zeros(())
        if self.cfg.architecture == "jumprelu":
            lam = self.cfg.l0_coefficient * warmup_ramp(progress, L0_WARMUP)
            count = jump_step(out.pre_acts.transpose(0, 1), self.clt.threshold[:, None, :], BANDWIDTH)
            sparsity = lam * count.sum(-1).sum(0).mean()
        elif dead is not None:
            aux = self._aux(resid, out.pre_acts, dead)
        return SAELoss(mse + sparsity + aux, mse, sparsity, aux, out)

    def _aux(self, resid: Tensor, pre: Tensor, dead: Tensor) -> Tensor:
        """AuxK per layer on its own output, with no host sync (as :meth:`saes.topk.TopKSAE.aux_loss`).
        The chosen dead latents decode through one batched product over layers: with k_aux a large share
        of F, a dense [L, B, F] @ [L, F, d] beats per-row gathers several times over on a CPU."""
        dead = dead.to(pre.device)
        vals, idx = pre.masked_fill(~dead, float("-inf")).topk(min(AUX_K, self.clt.d_sae), dim=-1)
        codes = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals)).transpose(0, 1)  # [L, B, F]
        own = torch.stack([w[:, 0] for w in self.clt.W_dec])  # [L, F, d]
        rec = torch.bmm(codes.to(own.dtype), own).transpose(0, 1)  # [B, L, d]
        err = (resid.detach() - rec.to(resid.dtype)).pow(2).sum(-1).mean(0)  # [L]
        return AUX_COEFFICIENT * (err * dead.any(-1)).sum()

    # ------------------------------------------------------------------ the unit-norm constraint (TopK)

    @torch.no_grad()
    def remove_parallel_grad_(self) -> None:
        for w in self.clt.W_dec:
            if w.grad is not None:
                unit = w / w.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None]
                w.grad -= (w.grad * unit).sum((1, 2), keepdim=True) * unit

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        for w in self.clt.W_dec:
            w.div_(w.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None])

    # ------------------------------------------------------------------ initialisation and saving

    @torch.no_grad()
    def init_from_(self, x: Tensor, y: Tensor, init_l0: float = 0.0, latent_scale: float = 0.1) -> list[float]:
        """Scales, biases and skip maps from a sample (``x``, ``y`` [n, L, d]); JumpReLU thresholds for an
        initial L0 of ``init_l0`` per layer. Returns each layer's fraction of variance the skip map (or,
        without one, the mean) leaves."""
        clt, d = self.clt, self.clt.d_model
        self.input_scale.copy_(d ** 0.5 / x.float().norm(dim=-1).mean(0).clamp_min(1e-12))
        self.output_scale.copy_(d ** 0.5 / y.float().norm(dim=-1).mean(0).clamp_min(1e-12))
        xs = x.double() * self.input_scale.double()[:, None]
        ys = y.double() * self.output_scale.double()[:, None]
        left = []
        for layer in range(clt.n_layers):
            if clt.W_skip is not None:
                w, b, fvu = ridge_map(xs[:, layer], ys[:, layer])
                clt.W_skip[layer].copy_(w.T)
            else:
                b, fvu = ys[:, layer].mean(0), 1.0
            clt.b_dec[layer].copy_(b)
            left.append(fvu)
        clt.W_enc.mul_(latent_scale)
        if self.cfg.architecture == "jumprelu" and init_l0 > 0:
            pre = torch.baddbmm(clt.b_enc[:, None, :], xs.float().transpose(0, 1), clt.W_enc)  # [L, n, F]
            rank = max(1, min(pre.shape[1], round(pre.shape[1] * (1 - init_l0 / clt.d_sae))))
            theta = pre.kthvalue(rank, dim=1).values.clamp_min(INIT_THRESHOLD)
            clt.log_threshold.copy_(theta.log())
        return left

    @torch.no_grad()
    def folded(self) -> CrossLayerTranscoder:
        """The CLT in raw units (scales folded into the weights), as :mod:`saes.clt`'s files hold it."""
        clt = self.clt
        out = CrossLayerTranscoder(clt.n_layers, clt.d_model, clt.d_sae, clt.W_skip is not None, clt.hook_in,
                                   clt.hook_out, clt.model_name, architecture=clt.architecture, k=clt.k,
                                   first_layer=clt.first_layer).to(clt.W_enc.device)
        out.train_corpus, out.train_tokens_end = clt.train_corpus, clt.train_tokens_end
        s, t = self.input_scale.float(), self.output_scale.float()
        out.W_enc.copy_(clt.W_enc * s[:, None, None])
        out.b_enc.copy_(clt.b_enc)
        out.log_threshold.copy_(clt.log_threshold)
        for i, w in enumerate(clt.W_dec):
            out.W_dec[i].copy_(w / t[i:, None])
        out.b_dec.copy_(clt.b_dec / t[:, None])
        if clt.W_skip is not None:
            out.W_skip.copy_(clt.W_skip * (s / t)[:, None, None])
        return out
