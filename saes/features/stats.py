"""Per-feature tables of a store: activation statistics, logit effects and decoder neighbours.

Activation statistics are one DuckDB pass per SAE over its committed shards (the
store is never loaded whole): firing count and frequency (over the tokens the SAE
read), max, mean over firing tokens, quantiles, and a histogram of ``hist_bins`` equal
intervals over (0, max].

Logit effects are the direct path of a feature's decoder row to the unembedding, as
Neuronpedia and SAEDashboard show them: the row goes through the final norm's gain
(LayerNorm also removes its mean; the norm's per-token scale is left out, so effects
compare across features but are not logits) and then ``W_U``:

    effect_f = (W_dec[f] ⊙ g) W_U        (LayerNorm: (W_dec[f] − mean) ⊙ g)

Decoder neighbours are the features whose decoder rows have the highest cosine with
``W_dec[f]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from interp.cache import atomic_path
from saes.features.store import parquet_scan

__all__ = ["activation_stats", "decoder_neighbours", "logit_effects", "write_feature_tables"]

CHUNK = 512


def write_feature_tables(model, out: Path, saes: list, records: list[dict], cfg) -> None:
    """``features/<sae>.parquet`` for each SAE of the job: one row per feature."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen = sum(r["seen"] for r in records)
    for name, _, sae in saes:
        files = [str(out / f"acts/{name}/{r['shard']:05d}.parquet") for r in records]
        table = activation_stats(files, sae.cfg.d_sae, seen, cfg.quantiles, cfg.hist_bins, out)
        top, bottom, hist = logit_effects(model, sae.W_dec, cfg.top_logits, cfg.hist_bins)
        nb_ids, nb_cos = decoder_neighbours(sae.W_dec, cfg.neighbours)
        table.update({
            "top_logit_tokens": top.indices.tolist(), "top_logit_values": top.values.tolist(),
            "bottom_logit_tokens": bottom.indices.tolist(), "bottom_logit_values": bottom.values.tolist(),
            "logit_hist_counts": hist[0].tolist(), "logit_hist_low": hist[1].tolist(),
            "logit_hist_high": hist[2].tolist(),
            "neighbour_features": nb_ids.tolist(), "neighbour_cosines": nb_cos.tolist(),
            "decoder_norm": sae.W_dec.detach().float().norm(dim=-1).cpu().tolist()})
        with atomic_path(out / "features" / f"{name}.parquet") as tmp:
            pq.write_table(pa.table(table), tmp, compression="zstd")


def activation_stats(files: list[str], d_sae: int, seen: int, quantiles=(0.5, 0.9, 0.99), bins: int = 40,
                     spill: Path | None = None) -> dict[str, list]:
    """Columns ``feature, fires, frequency, max, mean, quantiles, hist_counts`` over the given shards of one
    SAE; ``seen`` is the number of tokens the SAE read (the frequency's denominator)."""
    import duckdb

    db = duckdb.connect()
    db.execute("SET threads TO 2")
    db.execute("SET memory_limit = '1GB'")  # DuckDB spills past this instead of growing with the store
    if spill is not None:
        db.execute(f"SET temp_directory = '{str(spill / '.duckdb-tmp').replace(chr(39), chr(39) * 2)}'")
    scan = parquet_scan(files)
    qs = "[" + ", ".join(str(float(q)) for q in quantiles) + "]"
    agg = db.execute(f"SELECT feature, count(*) AS n, max(value) AS mx, avg(value) AS mean, "
                     f"quantile_cont(value, {qs}) AS q FROM {scan} GROUP BY feature").fetchnumpy()
    hist = db.execute(f"WITH s AS (SELECT feature, max(value) AS mx FROM {scan} GROUP BY feature) "
                      f"SELECT a.feature, least(floor(a.value / s.mx * {bins}), {bins - 1})::INT AS bin, count(*) AS n "
                      f"FROM {scan} a JOIN s USING (feature) GROUP BY ALL").fetchnumpy()
    fires = np.zeros(d_sae, np.int64)
    mx, mean = np.zeros(d_sae, np.float32), np.zeros(d_sae, np.float32)
    qv = np.zeros((d_sae, len(quantiles)), np.float32)
    counts = np.zeros((d_sae, bins), np.int64)
    f = agg["feature"].astype(np.int64)
    fires[f], mx[f], mean[f] = agg["n"], agg["mx"], agg["mean"]
    if len(f):
        qv[f] = np.stack([np.asarray(q, np.float32) for q in agg["q"]])
    np.add.at(counts, (hist["feature"].astype(np.int64), hist["bin"].astype(np.int64)), hist["n"])
    return {"feature": list(range(d_sae)), "fires": fires.tolist(),
            "frequency": (fires / max(seen, 1)).tolist(), "max": mx.tolist(), "mean": mean.tolist(),
            "quantiles": qv.tolist(), "quantile_levels": [list(quantiles)] * d_sae, "hist_counts": counts.tolist()}


@torch.no_grad()
def logit_effects(model, W_dec: Float[Tensor, "d_sae d_model"], k: int = 10, bins: int = 40):
    """Top and bottom ``k`` tokens of each feature's logit effect, and a histogram of its effect on every
    token: (top, bottom, (counts [d_sae, bins], low [d_sae], high [d_sae]))."""
    W_U = model.W_U.detach()
    g = model.ln_final.w.detach().to(W_U.device) if hasattr(model.ln_final, "w") else None
    layer_norm = getattr(model.cfg, "normalization_type", "") in ("LN", "LNPre")
    tops, bottoms, counts, lows, highs = [], [], [], [], []
    for i in range(0, W_dec.shape[0], CHUNK):
        d = W_dec[i:i + CHUNK].detach().to(W_U.device, W_U.dtype)
        if layer_norm:
            d = d - d.mean(-1, keepdim=True)
        if g is not None:
            d = d * g
        eff = einsum(d, W_U, "d_sae d_model, d_model d_vocab -> d_sae d_vocab").float()
        tops.append(eff.topk(k, dim=-1))
        bottoms.append((-eff).topk(k, dim=-1))
        lo, hi = eff.min(-1).values, eff.max(-1).values
        idx = ((eff - lo[:, None]) / (hi - lo).clamp_min(1e-12)[:, None] * bins).long().clamp(0, bins - 1)
        c = torch.zeros(len(eff), bins, dtype=torch.long, device=eff.device)
        c.scatter_add_(1, idx, torch.ones_like(idx))
        counts.append(c.cpu()), lows.append(lo.cpu()), highs.append(hi.cpu())
    top = torch.return_types.topk((torch.cat([t.values for t in tops]).cpu(), torch.cat([t.indices for t in tops]).cpu()))
    bottom = torch.return_types.topk((-torch.cat([t.values for t in bottoms]).cpu(),
                                      torch.cat([t.indices for t in bottoms]).cpu()))
    return top, bottom, (torch.cat(counts), torch.cat(lows), torch.cat(highs))


@torch.no_grad()
def decoder_neighbours(W_dec: Float[Tensor, "d_sae d_model"], k: int = 10):
    """For each feature, the ``k`` other features with the highest decoder cosine: (indices, cosines)."""
    unit = torch.nn.functional.normalize(W_dec.detach().float(), dim=-1)
    k = min(k, len(unit) - 1)
    ids, cos = [], []
    for i in range(0, len(unit), CHUNK):
        sim = unit[i:i + CHUNK] @ unit.T
        sim[torch.arange(len(sim)), torch.arange(i, i + len(sim))] = -2.0  # not itself
        t = sim.topk(k, dim=-1)
        ids.append(t.indices.cpu()), cos.append(t.values.cpu())
    return torch.cat(ids), torch.cat(cos)
