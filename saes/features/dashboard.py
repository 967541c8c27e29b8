"""Feature dashboards: everything a feature page shows, read from a store in one call.

:func:`feature_dashboard` gathers, for one feature of one SAE, what SAEDashboard and
Neuronpedia put on a feature page: the top contexts and SAEDashboard's interval groups,
each token with its activation; the activation histogram and firing density; the
logit effects (top and bottom tokens, and the histogram over the whole vocabulary, see
:mod:`saes.features.stats`); the nearest features by decoder cosine; the features that
fire on the same tokens (Jaccard); and any stored explanations with their scores.

Every part is a DuckDB query over the store's Parquet files or a row of its feature
table, so a page costs milliseconds to a second however large the store is, and never
holds more than one feature in memory. :meth:`FeatureDashboard.html` writes a
self-contained page with inline SVG charts (no script, tens of kilobytes), and
:meth:`FeatureDashboard.figure` returns the plotly figure for notebooks and the explorer.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field

from saes.features.store import Context, FeatureStore

__all__ = ["FeatureDashboard", "context_html", "feature_dashboard"]


@dataclass
class FeatureDashboard:
    model: str
    sae: str
    hook: str
    feature: int
    fires: int
    frequency: float
    """Fraction of the tokens the SAE read on which the feature fired."""
    max: float
    mean: float
    """Mean over the tokens where it fired."""
    quantiles: dict[str, float]
    hist_counts: list[int]
    hist_edges: list[float]
    """``len(hist_counts) + 1`` edges over (0, max]."""
    top: list[Context]
    groups: list[tuple[float, float, list[Context]]]
    top_logits: list[tuple[str, float]]
    bottom_logits: list[tuple[str, float]]
    logit_hist_counts: list[int]
    logit_hist_edges: list[float]
    neighbours: list[tuple[int, float]]
    """(feature, decoder cosine), highest first."""
    correlated: list[dict]
    explanations: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("top", "groups")}
        d["top"] = [c.to_dict() for c in self.top]
        d["groups"] = [{"low": lo, "high": hi, "contexts": [c.to_dict() for c in cs]} for lo, hi, cs in self.groups]
        d["top_logits"] = [{"token": t, "effect": v} for t, v in self.top_logits]
        d["bottom_logits"] = [{"token": t, "effect": v} for t, v in self.bottom_logits]
        d["neighbours"] = [{"feature": f, "cosine": c} for f, c in self.neighbours]
        return d

    def figure(self):
        """Activation histogram, logit-effect histogram and the top/bottom logit tokens (plotly)."""
        from plotly.subplots import make_subplots

        fig = make_subplots(rows=1, cols=3, subplot_titles=(
            f"activations (fires on {self.frequency:.3%} of tokens)", "logit effect on every token",
            "top and bottom logit effects"))
        mids = [(a + b) / 2 for a, b in zip(self.hist_edges, self.hist_edges[1:])]
        fig.add_bar(x=mids, y=self.hist_counts, marker_color="#e4572e", row=1, col=1, name="activations")
        lmids = [(a + b) / 2 for a, b in zip(self.logit_hist_edges, self.logit_hist_edges[1:])]
        fig.add_bar(x=lmids, y=self.logit_hist_counts, marker_color="#888", row=1, col=2, name="logit effects")
        pairs = self.bottom_logits[::-1] + self.top_logits[::-1]
        fig.add_bar(x=[v for _, v in pairs], y=[repr(t) for t, _ in pairs], orientation="h", row=1, col=3,
                    marker_color=["#3a6ea5" if v < 0 else "#e4572e" for _, v in pairs], name="tokens")
        fig.update_layout(title=f"{self.sae} feature {self.feature} ({self.hook}, {self.model})",
                          showlegend=False, height=420, width=1200, bargap=0.05)
        fig.update_xaxes(title_text="activation", row=1, col=1)
        fig.update_yaxes(title_text="tokens (where it fires)", row=1, col=1)
        fig.update_xaxes(title_text="logit effect", row=1, col=2)
        fig.update_yaxes(title_text="vocabulary tokens", row=1, col=2)
        fig.update_xaxes(title_text="logit effect", row=1, col=3)
        return fig

    def html(self) -> str:
        """A self-contained page: no script, no network, charts as inline SVG."""
        e = html.escape
        q = ", ".join(f"{k}: {v:.3f}" for k, v in self.quantiles.items())
        parts = [f"<!doctype html><meta charset='utf-8'><title>{e(self.sae)} feature {self.feature}</title>",
                 f"<style>{_CSS}</style><h1>{e(self.sae)} &middot; feature {self.feature}</h1>",
                 f"<p class=meta>{e(self.model)} &middot; {e(self.hook)} &middot; fires on {self.fires:,} tokens "
                 f"({self.frequency:.4%}) &middot; max {self.max:.3f} &middot; mean when firing {self.mean:.3f} "
                 f"&middot; quantiles {e(q)}</p>"]
        for ex in self.explanations[:3]:
            parts.append(f"<p class=expl>&ldquo;{e(str(ex['explanation']))}&rdquo; <span class=meta>"
                         f"({e(str(ex['explainer']))}; detection {_score(ex, 'detection')}, "
                         f"fuzzing {_score(ex, 'fuzzing')})</span></p>")
            if ex.get("warning"):
                parts.append(f"<p class=meta>warning: {e(str(ex['warning']))}</p>")
        parts.append("<div class=row>")
        parts.append(_svg_bars("activation density", self.hist_counts, self.hist_edges, "#e4572e",
                                y_label="tokens where it fires"))
        parts.append(_svg_bars("logit effect, every token", self.logit_hist_counts, self.logit_hist_edges, "#888",
                                y_label="vocabulary tokens"))
        parts.append("<div><h3>logit effects</h3><table>" + "".join(
            f"<tr><td class=neg>{e(repr(b))}</td><td>{bv:+.3f}</td><td class=pos>{e(repr(t))}</td><td>{tv:+.3f}</td></tr>"
            for (b, bv), (t, tv) in zip(self.bottom_logits, self.top_logits)) + "</table></div>")
        parts.append("<div><h3>nearest by decoder</h3><table>" + "".join(
            f"<tr><td>#{f}</td><td>{c:.3f}</td></tr>" for f, c in self.neighbours) + "</table></div>")
        parts.append("<div><h3>fire together (Jaccard)</h3><table>" + "".join(
            f"<tr><td>#{r['feature']}</td><td>{r['jaccard']:.3f}</td></tr>" for r in self.correlated) + "</table></div>")
        parts.append("</div><h2>top activations</h2>")
        parts += [context_html(c, self.max) for c in self.top]
        for lo, hi, members in self.groups:
            parts.append(f"<h2>interval {lo:.3f} &ndash; {hi:.3f}</h2>")
            parts += [context_html(c, self.max) for c in members]
        return "\n".join(parts) + "\n"


def feature_dashboard(store: FeatureStore, feature: int, sae: str | None = None, k: int = 10, groups: int = 5,
                      per_group: int = 4, window: int = 16, top_correlated: int = 10) -> FeatureDashboard:
    t0 = time.perf_counter()
    entry = store.sae(sae)
    name = entry["name"]
    row = store.feature_row(feature, name)
    vocab = store.vocab
    bins = len(row["hist_counts"])
    edges = [row["max"] * i / bins for i in range(bins + 1)]
    lb = len(row["logit_hist_counts"])
    lo, hi = row["logit_hist_low"], row["logit_hist_high"]
    fires = row["fires"]
    return FeatureDashboard(
        model=store.manifest["model"], sae=name, hook=entry["hook"], feature=feature, fires=fires,
        frequency=row["frequency"], max=row["max"], mean=row["mean"],
        quantiles={f"q{round(level * 100):g}": v for level, v in zip(row["quantile_levels"], row["quantiles"])},
        hist_counts=row["hist_counts"], hist_edges=edges,
        top=store.top_contexts(feature, k, name, window) if fires else [],
        groups=store.quantile_groups(feature, groups, per_group, name, window) if fires else [],
        top_logits=[(vocab[t], v) for t, v in zip(row["top_logit_tokens"], row["top_logit_values"])],
        bottom_logits=[(vocab[t], v) for t, v in zip(row["bottom_logit_tokens"], row["bottom_logit_values"])],
        logit_hist_counts=row["logit_hist_counts"], logit_hist_edges=[lo + (hi - lo) * i / lb for i in range(lb + 1)],
        neighbours=list(zip(row["neighbour_features"], row["neighbour_cosines"])),
        correlated=store.correlated(feature, top_correlated, name) if fires else [],
        explanations=store.explanations(feature, name), seconds=time.perf_counter() - t0)


_CSS = ("body{font:14px system-ui,sans-serif;margin:24px;max-width:1200px;color:#222}"
        ".meta{color:#666}.expl{font-size:16px}.row{display:flex;gap:28px;flex-wrap:wrap}"
        "table{border-collapse:collapse}td{padding:1px 6px;font-family:monospace}.neg{color:#3a6ea5}.pos{color:#e4572e}"
        ".ctx{font-family:monospace;white-space:pre-wrap;border-bottom:1px solid #eee;padding:4px 0}"
        ".ctx span{border-radius:2px}h2{font-size:15px;margin-top:18px}h3{font-size:13px;margin:4px 0}")


def _score(ex: dict, kind: str) -> str:
    v = ex.get(f"{kind}_balanced_accuracy")
    if v is None:
        return "not scored"
    return f"{v:.2f} [{ex[f'{kind}_low']:.2f}, {ex[f'{kind}_high']:.2f}]"


def context_html(c: Context, top: float) -> str:
    """One context as HTML: each token shaded by its activation relative to ``top``, its value on hover,
    the maximum in bold."""
    spans = []
    for i, (t, v) in enumerate(zip(c.tokens, c.values)):
        alpha = 0 if top <= 0 else min(1.0, v / top)
        text = html.escape(t).replace("\n", "&#9166;\n")
        style = f" style='background:rgba(228,87,46,{alpha:.2f})'" if v > 0 else ""
        weight = " <b>" if i == c.max_position else ""
        spans.append(f"<span title='{v:.3f}'{style}>{weight}{text}{'</b>' if weight else ''}</span>")
    return f"<div class=ctx title='document {c.document}, offset {c.doc_offset}'>{''.join(spans)}</div>"


def _svg_bars(title: str, counts: list[int], edges: list[float], color: str, w: int = 320, h: int = 140,
              y_label: str = "tokens") -> str:
    top = max(counts) if counts and max(counts) > 0 else 1
    bw = w / max(len(counts), 1)
    bars = "".join(f"<rect x='{i * bw:.1f}' y='{h - c / top * h:.1f}' width='{max(bw - 1, 1):.1f}' "
                   f"height='{c / top * h:.1f}' fill='{color}'><title>{edges[i]:.3f}-{edges[i + 1]:.3f}: {c}</title></rect>"
                   for i, c in enumerate(counts))
    return (f"<div><h3>{html.escape(title)}</h3><svg width='{w}' height='{h + 16}' role='img'>{bars}"
            f"<text x='2' y='11' font-size='11' class=ylabel>{html.escape(y_label)} (top bar {top:,})</text>"
            f"<text x='0' y='{h + 13}' font-size='11'>{edges[0]:.2f}</text>"
            f"<text x='{w}' y='{h + 13}' font-size='11' text-anchor='end'>{edges[-1]:.2f}</text></svg></div>")
