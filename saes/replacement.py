"""The replacement model: a transcoder set's fidelity, layer by layer and with every MLP replaced at once.

For each layer l of the set, on held-out corpus rows:

- FVU of the MLP output ``y`` (Σ‖y − ŷ‖² / Σ‖y − ȳ‖²), L0, and the share of latents that never fire;
- CE loss recovered when that layer's MLP alone is replaced by its transcoder:
  (CE_zero,l − CE_tc,l) / (CE_zero,l − CE_clean), where CE_zero,l zero-ablates that MLP's output.

For the whole set, the **replacement model** replaces every MLP of the set at once, with no
error term (each transcoder reads the residual the earlier replacements produced):

- its next-token loss against the clean model and against all of those MLPs zero-ablated,
  and the share of that gap it recovers;
- top-1 agreement: how often its most likely next token is the clean model's;
- KL(clean ‖ replacement) per token.

As in :mod:`saes.evaluate`, each row's first position (the BOS or the attention sink) keeps its
clean MLP output and is not scored, and so do massive-activation tokens (norm above
``max_norm_ratio`` × the batch median at any of the set's input hooks).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from interp.corpus import token_rows
from interp.progress import Estimate, progress
from saes.activations import typical_tokens
from saes.evaluate import held_out_batches, held_out_start
from saes.transcoder import TranscoderSet

__all__ = ["LayerFidelity", "ReplacementEval", "evaluate_replacement"]


@dataclass
class LayerFidelity:
    layer: int
    fvu: float
    l0: float
    dead_frac: float
    ce_alone: float
    """Next-token loss with this layer's MLP alone replaced."""
    ce_zero_alone: float
    """... and with this layer's MLP output alone zero-ablated."""
    ce_loss_recovered: float


@dataclass
class ReplacementEval:
    tokens: int
    ce_clean: float
    ce_replacement: float
    """Every MLP of the set replaced at once, no error term."""
    ce_zero: float
    """Every MLP of the set zero-ablated."""
    ce_loss_recovered: float
    top1_agreement: float
    kl: float
    layers: list[LayerFidelity] = field(default_factory=list)
    skipped_massive: int = 0
    skip_rows: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    def figure(self):
        from interp.figures.saes import replacement_figure

        return replacement_figure(self)


@torch.no_grad()
def evaluate_replacement(model, tset: TranscoderSet, corpus: str | None = None, tokens: int = 4096, seq_len: int = 128,
                         batch_rows: int = 16, skip_rows: int | None = None, max_norm_ratio: float = 10.0,
                         per_layer: bool = True, force: bool = False) -> ReplacementEval:
    """The figures above over ``tokens`` held-out corpus tokens (past the set's training rows). Without
    ``per_layer`` only the whole-set figures and per-layer FVU/L0 are computed (2 forwards per batch
    fewer per layer)."""
    tset.check_model(model, force)
    layers = sorted(tset.layers)
    first = tset[layers[0]]
    skip_rows = held_out_start(first, corpus, seq_len, skip_rows)
    tset.to(model.cfg.device)
    for sae in tset.layers.values():
        sae.eval()
    t0 = time.perf_counter()
    rows = list(token_rows(model, corpus, tokens, seq_len, skip_rows=skip_rows))
    ins = {layer: tset.input_hook(layer) for layer in layers}
    outs = {layer: tset.output_hook(layer) for layer in layers}
    sums = {k: 0.0 for k in ("clean", "repl", "zero", "kl", "agree", "n")}
    alone = {layer: [0.0, 0.0] for layer in layers}
    sq = {layer: 0.0 for layer in layers}
    l0 = {layer: 0.0 for layer in layers}
    ys: dict[int, list] = {layer: [] for layer in layers}
    fires = {layer: torch.zeros(tset[layer].cfg.d_sae, device=model.cfg.device) for layer in layers}
    n_tok, skipped = 0, 0
    # The bar counts forward passes, not batches: a set's batch is 3 of them plus 2 per layer, so a
    # one-batch evaluation of 30 layers would otherwise sit at 0/1 for minutes.
    per_batch = 3 + (2 * len(layers) if per_layer else 0)
    total = -(-len(rows) // batch_rows) * per_batch
    bar = progress(total=total, desc="replacement model eval", unit="forward")
    estimate = Estimate("replacement model eval", total, "forward passes",
                        "fewer with --tokens" + ("" if not per_layer else ", or --no-per-layer"), warmup=True)

    def tick() -> None:
        bar.update(1)
        estimate.done(1)

    for batch in held_out_batches(model, rows, batch_rows, None):
        names = set(ins.values()) | set(outs.values())
        clean_logits, cache = model.run_with_cache(batch, names_filter=lambda n: n in names)
        tick()
        mask = torch.zeros(batch.shape, dtype=torch.bool, device=batch.device)
        mask[:, 1:] = True
        for layer in layers:
            x = cache[ins[layer]][:, 1:].reshape(-1, model.cfg.d_model)
            mask[:, 1:] &= typical_tokens(x, max_norm_ratio).view(batch.shape[0], -1)
        skipped += int((~mask[:, 1:]).sum())
        inputs = {layer: cache[ins[layer]][mask].float() for layer in layers}
        codes: dict[int, torch.Tensor] = {}
        for layer in layers:  # per-layer reconstruction on the clean run's own inputs
            y = cache[outs[layer]][mask].float()
            y_hat, f = tset.predict(layer, inputs, codes)
            sq[layer] += (y - y_hat.float()).pow(2).sum().item()
            l0[layer] += (f > 0).float().sum().item()
            fires[layer] += (f > 0).float().sum(0)
            ys[layer].append(y.cpu())
        n_tok += int(mask.sum())
        target = batch[:, 2:]
        scored = mask[:, 1:-1]  # predictions made at replaced positions

        def ce(logits):
            lp = logits[:, 1:-1].float().log_softmax(-1)
            return -(lp.gather(-1, target[..., None])[..., 0][scored]).sum().item()

        clean = clean_logits.float()
        sums["clean"] += ce(clean)
        sums["n"] += int(scored.sum())
        repl = model.run_with_hooks(batch, fwd_hooks=_splice(tset, layers, ins, outs, mask)).float()
        tick()
        zero = model.run_with_hooks(batch, fwd_hooks=[(outs[layer], _zero(mask)) for layer in layers]).float()
        tick()
        sums["repl"] += ce(repl)
        sums["zero"] += ce(zero)
        p_clean = clean[:, 1:-1].log_softmax(-1)
        p_repl = repl[:, 1:-1].log_softmax(-1)
        sums["kl"] += ((p_clean.exp() * (p_clean - p_repl)).sum(-1)[scored]).sum().item()
        sums["agree"] += ((clean[:, 1:-1].argmax(-1) == repl[:, 1:-1].argmax(-1))[scored]).float().sum().item()
        if per_layer:
            for layer in layers:
                one = model.run_with_hooks(batch, fwd_hooks=_splice(tset, [layer], ins, outs, mask))
                tick()
                alone[layer][0] += ce(one)
                alone[layer][1] += ce(model.run_with_hooks(batch, fwd_hooks=[(outs[layer], _zero(mask))]))
                tick()
    bar.close()
    n = max(sums["n"], 1)
    ce_clean, ce_repl, ce_zero = sums["clean"] / n, sums["repl"] / n, sums["zero"] / n
    fidelity = []
    for layer in layers:
        Y = torch.cat(ys[layer])
        fvu = sq[layer] / max((Y - Y.mean(0)).pow(2).sum().item(), 1e-12)
        ce_a, ce_z = (alone[layer][0] / n, alone[layer][1] / n) if per_layer else (float("nan"), float("nan"))
        rec = (ce_z - ce_a) / (ce_z - ce_clean) if per_layer and ce_z != ce_clean else float("nan")
        fidelity.append(LayerFidelity(layer, fvu, l0[layer] / max(n_tok, 1), float((fires[layer] == 0).float().mean()),
                                      ce_a, ce_z, rec))
    recovered = (ce_zero - ce_repl) / (ce_zero - ce_clean) if ce_zero != ce_clean else float("nan")
    return ReplacementEval(n_tok, ce_clean, ce_repl, ce_zero, recovered, sums["agree"] / n, sums["kl"] / n, fidelity,
                           skipped, skip_rows, time.perf_counter() - t0)


def _splice(tset: TranscoderSet, layers: list[int], ins: dict, outs: dict, mask: torch.Tensor) -> list:
    """Hooks that replace each listed layer's MLP output, at ``mask``, by its transcoder's prediction from
    the inputs the same forward pass gave it (a CLT's from every layer's up to it, so every input is kept)."""
    seen: dict[int, torch.Tensor] = {}
    codes: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in sorted(ins):
        def keep(x, *, hook, layer=layer):
            seen[layer] = x[mask].float()
            return x

        hooks.append((ins[layer], keep))
    for layer in layers:
        def replace(y, *, hook, layer=layer):
            y = y.clone()
            y[mask] = tset.predict(layer, seen, codes)[0].to(y.dtype)
            return y

        hooks.append((outs[layer], replace))
    return hooks


def _zero(mask: torch.Tensor):
    def zero(y, *, hook):
        y = y.clone()
        y[mask] = 0
        return y

    return zero
