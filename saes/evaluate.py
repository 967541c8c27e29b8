"""SAE evaluation on held-out tokens, with the SAE spliced into the model's forward pass.

- L0: mean active latents per token; FVU = Σ‖x − x̂‖² / Σ‖x − x̄‖² (1 − explained variance).
- CE loss recovered = (CE_zero − CE_sae) / (CE_zero − CE_clean), where CE_zero replaces
  the hooked activation by zeros and CE_sae by the SAE's reconstruction.
- KL(clean ‖ spliced) of the next-token distributions, per token.
- Dead latents (never fire on the evaluation tokens) and dense ones (fire on > 10%).

Each row's first position (the BOS, or the attention-sink first token of a model
without one) is neither reconstructed nor scored, as in training, and neither are
massive-activation tokens elsewhere (norm above ``max_norm_ratio`` × the batch median,
:func:`saes.activations.typical_tokens`): they keep their clean activation in every
run, and ``skipped_massive`` counts them.

Held-out rows: an SAE trained here records its corpus and the last token it trained on
(:attr:`SAEConfig.train_tokens_end`), and the evaluation starts past it by default; rows
that overlap the training data are refused. For an SAE without that record (one from
SAELens, say) the default start is row ``LEGACY_SKIP_ROWS``, with a warning.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.corpus import corpus_id, token_rows
from interp.errors import InterpError
from interp.progress import progress
from saes.activations import typical_tokens
from saes.base import SAE
from saes.io import resolve_hook

__all__ = ["DENSE", "LEGACY_SKIP_ROWS", "SAEEval", "evaluate_sae", "held_out_batches", "held_out_start",
           "reconstruction_metrics"]

DENSE = 0.1
LEGACY_SKIP_ROWS = 20_000  # past a default-length run (2M tokens); used only where the SAE records nothing


@dataclass
class SAEEval:
    hook: str
    tokens: int
    l0: float
    fvu: float
    explained_variance: float
    ce_clean: float
    ce_sae: float
    ce_zero: float
    ce_loss_recovered: float
    kl_sae: float
    dead_frac: float
    dense_frac: float
    skipped_massive: int
    skip_rows: int
    """The evaluation read corpus rows from this one on (past the SAE's training rows)."""
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@torch.no_grad()
def reconstruction_metrics(sae: SAE, x: Float[Tensor, "batch d_in"], batch: int = 4096) -> dict[str, float]:
    """L0, FVU and dead/dense fractions of ``sae`` on activations ``x`` alone (no model pass):
    the cheap half of :func:`evaluate_sae`, for sweeps over cached activations."""
    sae = sae.eval()
    sq_err, l0, fires = 0.0, 0.0, torch.zeros(sae.cfg.d_sae, device=x.device)
    for i in range(0, len(x), batch):
        xb = x[i:i + batch].float()
        f = sae.encode(xb)
        sq_err += (xb - sae.decode(f).float()).pow(2).sum().item()
        l0 += (f > 0).float().sum().item()
        fires += (f > 0).float().sum(0)
    fvu = sq_err / max((x.float() - x.float().mean(0)).pow(2).sum().item(), 1e-12)
    n = len(x)
    return {"tokens": n, "l0": l0 / n, "fvu": fvu, "explained_variance": 1 - fvu,
            "dead_frac": float((fires == 0).float().mean()), "dense_frac": float((fires / n > DENSE).float().mean())}


def held_out_start(sae: SAE, corpus: str | None, seq_len: int, skip_rows: int | None = None) -> int:
    """The first corpus row (of ``seq_len`` tokens) an evaluation of ``sae`` may read: ``skip_rows`` if
    given and clear of the SAE's training rows (else :class:`InterpError`), otherwise the first row
    past them."""
    trained_here = bool(sae.cfg.train_corpus) and sae.cfg.train_corpus == corpus_id(corpus)
    first_free = -(-sae.cfg.train_tokens_end // seq_len) if trained_here else 0
    if skip_rows is None:
        if not sae.cfg.train_corpus:
            print(f"interp: warning: the SAE does not record its training rows; evaluating from row "
                  f"{LEGACY_SKIP_ROWS} (set --skip-rows past its training data)", file=sys.stderr)
            return LEGACY_SKIP_ROWS
        return first_free
    if skip_rows < 0:
        raise InterpError(f"--skip-rows must be at least 0, not {skip_rows}")
    if skip_rows < first_free:
        raise InterpError(f"rows {skip_rows}-{first_free - 1} of this corpus are the SAE's training data (its first "
                          f"{sae.cfg.train_tokens_end:,} tokens); use --skip-rows {first_free} or more, or leave it out")
    return skip_rows


def held_out_batches(model, rows: list, batch_rows: int, desc: str | None):
    """Batches of corpus ``rows`` on the model's device, each row with the model's BOS in front where it
    prepends one, under a progress bar (none with ``desc`` None: the caller keeps its own)."""
    bos = model.tokenizer.bos_token_id if model.cfg.default_prepend_bos else None
    starts = range(0, len(rows), batch_rows)
    for i in (progress(starts, desc=desc, unit="batch") if desc is not None else starts):
        batch = torch.stack(rows[i:i + batch_rows]).to(model.cfg.device)
        if bos is not None:
            batch = torch.cat([batch.new_full((batch.shape[0], 1), bos), batch], 1)
        yield batch


@torch.no_grad()
def evaluate_sae(model, sae: SAE, corpus: str | None = None, tokens: int = 32_768, seq_len: int = 128,
                 batch_rows: int = 16, skip_rows: int | None = None, max_norm_ratio: float = 10.0,
                 force: bool = False) -> SAEEval:
    """Metrics over ``tokens`` corpus tokens of held-out rows (:func:`held_out_start`). ``force``
    evaluates an SAE whose config names another model (:func:`saes.io.resolve_hook`)."""
    hook = resolve_hook(model, sae, force)
    skip_rows = held_out_start(sae, corpus, seq_len, skip_rows)
    sae = sae.to(model.cfg.device).eval()
    t0 = time.perf_counter()
    rows = list(token_rows(model, corpus, tokens, seq_len, skip_rows=skip_rows))
    sums = {k: 0.0 for k in ("l0", "sq_err", "ce_clean", "ce_sae", "ce_zero", "kl", "n_pred")}
    xs, fires = [], torch.zeros(sae.cfg.d_sae, device=model.cfg.device)
    n_tok, skipped = 0, 0
    for batch in held_out_batches(model, rows, batch_rows, "SAE eval"):
        start = 1  # the BOS, or without one the first token (the attention sink), is not spliced or scored
        seen = {}

        def keep(x, *, hook):
            seen["x"] = x
            mask = torch.zeros(x.shape[:2], dtype=torch.bool, device=x.device)
            flat = x[:, start:].reshape(-1, x.shape[-1])
            mask[:, start:] = typical_tokens(flat, max_norm_ratio).view(x.shape[0], -1)
            seen["mask"] = mask  # the positions the SAE replaces
            return x

        def splice(x, *, hook):
            out = sae(x[seen["mask"]])
            seen["f"] = out.feature_acts
            x = x.clone()
            x[seen["mask"]] = out.x_hat.to(x.dtype)
            return x

        def zero(x, *, hook):
            x = x.clone()
            x[seen["mask"]] = 0
            return x

        clean = model.run_with_hooks(batch, fwd_hooks=[(hook, keep)]).float()
        spliced = model.run_with_hooks(batch, fwd_hooks=[(hook, splice)]).float()
        zeroed = model.run_with_hooks(batch, fwd_hooks=[(hook, zero)]).float()
        target = batch[:, start + 1:]
        for key, logits in (("ce_clean", clean), ("ce_sae", spliced), ("ce_zero", zeroed)):
            lp = logits[:, start:-1].log_softmax(-1)
            sums[key] += -lp.gather(-1, target[..., None]).sum().item()
        p_clean = clean[:, start:-1].log_softmax(-1)
        p_sae = spliced[:, start:-1].log_softmax(-1)
        sums["kl"] += (p_clean.exp() * (p_clean - p_sae)).sum().item()
        sums["n_pred"] += target.numel()
        x = seen["x"][seen["mask"]].float()
        skipped += int((~seen["mask"][:, start:]).sum())
        f = seen["f"]
        x_hat = sae.decode(f).float()
        sums["sq_err"] += (x - x_hat).pow(2).sum().item()
        sums["l0"] += (f > 0).float().sum().item()
        fires += (f > 0).float().sum(0)
        xs.append(x.cpu())
        n_tok += x.shape[0]
    X = torch.cat(xs)
    total_var = (X - X.mean(0)).pow(2).sum().item()
    fvu = sums["sq_err"] / max(total_var, 1e-12)
    n = sums["n_pred"]
    ce_clean, ce_sae, ce_zero = sums["ce_clean"] / n, sums["ce_sae"] / n, sums["ce_zero"] / n
    recovered = (ce_zero - ce_sae) / (ce_zero - ce_clean) if ce_zero != ce_clean else float("nan")
    return SAEEval(hook, n_tok, sums["l0"] / n_tok, fvu, 1 - fvu, ce_clean, ce_sae, ce_zero, recovered,
                   sums["kl"] / n, float((fires == 0).float().mean()), float((fires / n_tok > DENSE).float().mean()),
                   skipped, skip_rows, time.perf_counter() - t0)
