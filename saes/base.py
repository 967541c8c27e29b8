"""The SAE interface every architecture implements.

With input scale s (so that E‖s·x‖ = √d_in over the training data), an SAE computes

    x' = s·x,   pre = (x' − b_dec) W_enc + b_enc,   f = σ(pre),   x̂ = (f W_dec + b_dec) / s

where σ is the architecture's activation (ReLU, TopK, BatchTopK, JumpReLU). Losses are
measured in the scaled space, so hyper-parameters transfer across models and layers.
:meth:`SAE.fold_input_scale_` moves s into the weights (W_enc·s, W_dec/s, b_dec/s),
after which the SAE reads raw activations with s = 1; files are always saved folded.

A **transcoder** (``cfg.hook_out`` set) is the same module with a target that differs from
its input: it reads x at ``cfg.hook_name`` and predicts y at ``cfg.hook_out``. With the
output's own scale t (E‖t·y‖ = √d_in), a skip transcoder (Paulo, Shabalin & Belrose 2025)
computes

    pre = (s·x − b_in) W_enc + b_enc,   f = σ(pre),   ŷ = (f W_dec + (s·x) W_skipᵀ + b_dec) / t

``W_skip [d_in, d_in]`` exists when ``cfg.skip`` (circuit-tracer's and sparsify's orientation:
the skip path is ``F.linear(x, W_skip)``). The loss is ‖t·y − t·ŷ‖², and every
architecture, AuxK, the CUDA-graph step and resume apply unchanged. Saved files fold both
scales and b_in into the weights (b_enc ← b_enc − b_in W_enc), which is the form circuit-tracer
computes.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from einops import einsum
from jaxtyping import Bool, Float
from torch import Tensor, nn

from saes.config import SAEConfig

__all__ = ["SAE", "SAELoss", "SAEOutput", "ridge_map", "warmup_ramp"]


def warmup_ramp(progress: float | Tensor, warmup: float) -> float | Tensor:
    """min(1, progress / warmup), for a float or a 0-d tensor (a CUDA graph's input, so that the
    captured step does not freeze the coefficient at its value on the capturing step)."""
    if isinstance(progress, Tensor):
        return (progress / warmup).clamp(max=1.0)
    return min(1.0, progress / warmup)


def ridge_map(x: Tensor, y: Tensor, ridge: float = 0.1) -> tuple[Tensor, Tensor, float]:
    """(w [d_in, d_out], b [d_out], unexplained fraction): the ridge least-squares fit y ≈ x w + b in
    float64, ``ridge`` relative to the inputs' mean variance."""
    x, y = x.double(), y.double()
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    gram = xc.T @ xc
    gram.diagonal().add_(ridge * len(x) * float(xc.pow(2).mean()))
    w = torch.linalg.solve(gram, xc.T @ yc)
    return w, ym - xm @ w, float((yc - xc @ w).pow(2).sum() / yc.pow(2).sum().clamp_min(1e-30))


class SAEOutput(NamedTuple):
    x_hat: Float[Tensor, "batch d_in"]
    """Reconstruction, in the input's units."""
    feature_acts: Float[Tensor, "batch d_sae"]
    pre_acts: Float[Tensor, "batch d_sae"]


class SAELoss(NamedTuple):
    loss: Tensor
    """What the optimiser minimises."""
    mse: Tensor
    """Mean over tokens of ‖x' − x̂'‖² (scaled space)."""
    sparsity: Tensor
    """The architecture's sparsity term, already weighted (0 for TopK/BatchTopK)."""
    aux: Tensor
    """AuxK term, already weighted (0 where unused)."""
    output: SAEOutput


class SAE(nn.Module):
    """Base class: parameters ``W_enc [d_in, d_sae]``, ``b_enc``, ``W_dec [d_sae, d_in]``, ``b_dec``."""

    def __init__(self, cfg: SAEConfig):
        super().__init__()
        self.cfg = cfg
        dtype = getattr(torch, cfg.dtype)
        self.W_enc = nn.Parameter(torch.empty(cfg.d_in, cfg.d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.empty(cfg.d_sae, cfg.d_in, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype))
        self.register_buffer("input_scale", torch.ones((), dtype=dtype))
        if cfg.hook_out:
            self.b_in = nn.Parameter(torch.zeros(cfg.d_in, dtype=dtype))
            self.register_buffer("output_scale", torch.ones((), dtype=dtype))
            self.W_skip = nn.Parameter(torch.zeros(cfg.d_in, cfg.d_in, dtype=dtype)) if cfg.skip else None
        self.reset_parameters()

    @property
    def is_transcoder(self) -> bool:
        return bool(self.cfg.hook_out)

    @property
    def target_scale(self) -> Tensor:
        """The scale of the space the loss is measured in: the output's for a transcoder."""
        return self.output_scale if self.is_transcoder else self.input_scale

    # ------------------------------------------------------------------ to override

    def reset_parameters(self) -> None:
        """Unit-norm random decoder rows, W_enc = W_decᵀ (Gao et al. 2024 §2.2)."""
        with torch.no_grad():
            d = torch.randn_like(self.W_dec)
            self.W_dec.copy_(d / d.norm(dim=1, keepdim=True))
            self.W_enc.copy_(self.W_dec.T)

    def activation(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        raise NotImplementedError

    def sparsity_loss(self, out: SAEOutput, progress: float) -> Tensor:
        return out.x_hat.new_zeros(())

    # ------------------------------------------------------------------ shared

    def pre_acts(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        x = x.to(self.W_enc.dtype) * self.input_scale
        centre = self.b_in if self.is_transcoder else self.b_dec
        # addmm, not einsum + b_enc: under autocast the fused bias keeps pre in bf16, where a separate
        # fp32 add would promote the [batch, d_sae] tensor, the step's largest, back to fp32.
        flat = (x - centre).reshape(-1, self.cfg.d_in)
        return torch.addmm(self.b_enc, flat, self.W_enc).view(*x.shape[:-1], self.cfg.d_sae)

    def encode(self, x: Float[Tensor, "batch d_in"]) -> Float[Tensor, "batch d_sae"]:
        return self.activation(self.pre_acts(x))

    def decode(self, f: Float[Tensor, "batch d_sae"], x: Float[Tensor, "batch d_in"] | None = None
               ) -> Float[Tensor, "batch d_in"]:
        """The reconstruction from codes ``f``; a skip transcoder also needs its input ``x``."""
        return self.finish(einsum(f, self.W_dec, "batch d_sae, d_sae d_in -> batch d_in"), x)

    def finish(self, rec: Tensor, x: Tensor | None = None) -> Tensor:
        """``rec = f W_dec`` (scaled space) to the output's units: + b_dec, the skip path, ÷ scale."""
        if not self.is_transcoder:
            return (rec + self.b_dec) / self.input_scale
        if self.W_skip is not None:
            if x is None:
                raise ValueError("a skip transcoder's output needs its input x")
            xs = x.to(self.W_skip.dtype) * self.input_scale
            rec = rec + torch.nn.functional.linear(xs, self.W_skip).to(rec.dtype)
        return (rec + self.b_dec) / self.output_scale

    def forward(self, x: Float[Tensor, "batch d_in"]) -> SAEOutput:
        pre = self.pre_acts(x)
        f = self.activation(pre)
        return SAEOutput(self.decode(f, x), f, pre)

    def mse(self, target: Tensor, x_hat: Tensor) -> Tensor:
        return ((target.to(x_hat.dtype) - x_hat) * self.target_scale).pow(2).sum(-1).mean()

    def loss(self, x: Float[Tensor, "batch d_in"], progress: float = 1.0,
             dead: Bool[Tensor, " d_sae"] | None = None, target: Tensor | None = None) -> SAELoss:
        """Reconstruction + sparsity (+ AuxK where the architecture uses it). ``progress`` in [0, 1]
        is the fraction of training done (for warm-ups); ``dead`` marks latents that have not fired;
        ``target`` is what a transcoder predicts (an SAE's target is ``x``)."""
        target = x if target is None else target
        out = self(x)
        mse = self.mse(target, out.x_hat)
        sparsity = self.sparsity_loss(out, progress)
        aux = self.aux_loss(target, out, dead)
        return SAELoss(mse + sparsity + aux, mse, sparsity, aux, out)

    def aux_loss(self, target: Tensor, out: SAEOutput, dead: Tensor | None) -> Tensor:
        return out.x_hat.new_zeros(())

    @torch.no_grad()
    def fold_input_scale_(self) -> None:
        """Absorb the scales (and a transcoder's b_in) into the weights; the SAE then reads and writes
        raw activations with s = t = 1."""
        s = self.input_scale.clone()
        if self.is_transcoder:
            t = self.output_scale.clone()
            self.b_enc.sub_(self.b_in @ self.W_enc)
            self.b_in.zero_()
            self.W_enc.mul_(s)
            self.W_dec.div_(t)
            self.b_dec.div_(t)
            if self.W_skip is not None:
                self.W_skip.mul_(s / t)
            self.output_scale.fill_(1.0)
        else:
            self.W_enc.mul_(s)
            self.W_dec.div_(s)
            self.b_dec.div_(s)
        self.input_scale.fill_(1.0)

    @torch.no_grad()
    def set_input_scale_(self, sample: Float[Tensor, "batch d_in"]) -> float:
        """s = √d_in / E‖x‖ over a sample of activations."""
        s = self.cfg.d_in ** 0.5 / sample.float().norm(dim=-1).mean().clamp_min(1e-12)
        self.input_scale.fill_(float(s))
        return float(s)

    @torch.no_grad()
    def set_output_scale_(self, sample: Float[Tensor, "batch d_in"]) -> float:
        """A transcoder's t = √d_in / E‖y‖ over a sample of its targets."""
        t = self.cfg.d_in ** 0.5 / sample.float().norm(dim=-1).mean().clamp_min(1e-12)
        self.output_scale.fill_(float(t))
        return float(t)

    @torch.no_grad()
    def init_skip_(self, sample: Float[Tensor, "batch d_in"], target: Float[Tensor, "batch d_in"],
                   ridge: float = 0.1, latent_scale: float = 0.1) -> float:
        """A skip transcoder's W_skip and b_dec at the ridge least-squares map from its (scaled) inputs to
        its (scaled) targets, so that training starts from the best linear transcoder and the latents
        learn what no linear map gives. ``ridge`` is relative to the inputs' mean variance. The encoder
        is scaled by ``latent_scale`` so that the latents start quiet: at full size their random outputs
        would add noise on top of the fitted map that a short run does not remove. Returns the fraction
        of the sample's variance the linear map leaves unexplained.

        On SmolLM2's MLPs a map fitted on 4,096 tokens leaves 0.16 (layer 2) to 0.45 (layer 20) of
        held-out variance; training W_skip from zero with the latents had left 0.91 after 100k tokens."""
        w, b, fvu = ridge_map(sample.double() * float(self.input_scale), target.double() * float(self.output_scale), ridge)
        self.W_skip.copy_(w.T.to(self.W_skip.dtype))
        self.b_dec.copy_(b.to(self.b_dec.dtype))
        self.W_enc.mul_(latent_scale)
        return fvu

    def extra_tensors(self) -> dict[str, Tensor]:
        """Tensors besides the four weights that the SAELens file carries (``threshold``, ``W_skip``)."""
        return {"W_skip": self.W_skip.detach()} if self.is_transcoder and self.W_skip is not None else {}

    @torch.no_grad()
    def load_extra_tensors_(self, tensors: dict[str, Tensor]) -> None:
        if self.is_transcoder and self.W_skip is not None:
            self.W_skip.copy_(tensors["W_skip"])
