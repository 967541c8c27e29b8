"""A store in Neuronpedia's export layout, so its features can be uploaded.

Neuronpedia's exports (the layout its utilities write and import) hold, per model and
source (``<layer>-<source set>``):

    <out>/<model>/<source>/model.jsonl, source.jsonl
    <out>/<model>/<source>/features/batch-N.jsonl.gz       one feature per line
    <out>/<model>/<source>/activations/batch-N.jsonl.gz    one top context per line
    <out>/<model>/<source>/explanations/batch-N.jsonl.gz   one explanation per line

with camelCase records (``modelId``, ``layer`` = the source id, ``index``, ``maxActApprox``,
``pos_str``/``pos_values`` logit effects, ``freq_hist_data_bar_*`` histograms; and for
activations ``tokens``, ``values``, ``maxValue``, ``maxValueTokenIndex``). Each batch
file is written atomically. Every feature of a batch is one DuckDB query, not one per
feature.
"""

from __future__ import annotations

import gzip
import json
import re
import time
from pathlib import Path

from interp.cache import atomic_path
from interp.errors import InterpError
from saes.features.store import FeatureStore

__all__ = ["export_neuronpedia"]


def export_neuronpedia(store: FeatureStore, out: str | Path, sae: str | None = None, batch: int = 128,
                       top: int = 20, set_name: str = "interp") -> dict:
    entry = store.sae(sae)
    name, hook = entry["name"], entry["hook"]
    m = re.match(r"blocks\.(\d+)\.(.+)", hook)
    layer = m.group(1) if m else "0"
    model_id = store.manifest["model"].rsplit("/", 1)[-1].lower()
    source = f"{layer}-{set_name}-{re.sub(r'[^a-z0-9]+', '', (m.group(2) if m else hook).lower())}"
    root = Path(out) / model_id / source
    n_layers = store.manifest.get("n_layers")
    if n_layers is None:
        raise InterpError(f"{store.path} was extracted before stores recorded the model's layer count, which "
                          "Neuronpedia's model.jsonl needs; run the same `interp sae extract` again (it writes "
                          "nothing new, only the count)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InterpError(f"--out {out} is a file; the export is a directory")
    t0 = time.perf_counter()
    # The longest context in the store: the last context of a document is shorter than --ctx.
    prompt_tokens = store._sql("SELECT max(position) + 1 AS n FROM {tokens}", name)[0]["n"]
    _jsonl(root / "model.jsonl", [{"id": model_id, "displayName": store.manifest["model"], "layers": n_layers}])
    _jsonl(root / "source.jsonl", [{"id": source, "modelId": model_id, "setName": set_name, "hookName": hook,
                                    "dataset": store.manifest["corpus"], "num_prompts": store.manifest["contexts"],
                                    "num_tokens_in_prompt": prompt_tokens}])
    vocab = store.vocab
    feats = store._sql("SELECT * FROM {features} ORDER BY feature", name)
    d_sae = len(feats)
    n_acts = n_expl = 0
    explanations = store.explanations(None, name)
    for b, lo in enumerate(range(0, d_sae, batch)):
        hi = min(lo + batch, d_sae)
        rows = feats[lo:hi]
        _jsonl(root / "features" / f"batch-{b}.jsonl.gz", [_feature(r, model_id, source, vocab) for r in rows])
        acts = _top_contexts(store, name, lo, hi, top)
        n_acts += len(acts)
        _jsonl(root / "activations" / f"batch-{b}.jsonl.gz",
               [{"modelId": model_id, "layer": source, "index": str(a["feature"]), "tokens": a["tokens"],
                 "values": a["values"], "maxValue": max(a["values"]), "minValue": min(a["values"]),
                 "maxValueTokenIndex": a["values"].index(max(a["values"])),
                 "dataIndex": str(a["context"])} for a in acts])
        ex = [e for e in explanations if lo <= e["feature"] < hi]
        n_expl += len(ex)
        _jsonl(root / "explanations" / f"batch-{b}.jsonl.gz",
               [{"modelId": model_id, "layer": source, "index": str(e["feature"]), "description": e["explanation"],
                 "explanationModelName": e["explainer"], "typeName": f"interp-{e['prompt_version']}",
                 "notes": json.dumps({k: v for k, v in e.items() if k.startswith(("detection", "fuzzing"))})}
                for e in ex])
    return {"out": str(root), "model_id": model_id, "source": source, "features": d_sae, "activations": n_acts,
            "explanations": n_expl, "batches": -(-d_sae // batch), "seconds": time.perf_counter() - t0}


def _feature(r: dict, model_id: str, source: str, vocab: list[str]) -> dict:
    bins = len(r["hist_counts"])
    lb = len(r["logit_hist_counts"])
    lo, hi = r["logit_hist_low"], r["logit_hist_high"]
    return {"modelId": model_id, "layer": source, "index": str(r["feature"]), "maxActApprox": r["max"],
            "frac_nonzero": r["frequency"],
            "pos_str": [vocab[t] for t in r["top_logit_tokens"]], "pos_values": r["top_logit_values"],
            "neg_str": [vocab[t] for t in r["bottom_logit_tokens"]], "neg_values": r["bottom_logit_values"],
            "freq_hist_data_bar_heights": r["hist_counts"],
            "freq_hist_data_bar_values": [r["max"] * (i + 0.5) / bins for i in range(bins)],
            "logits_hist_data_bar_heights": r["logit_hist_counts"],
            "logits_hist_data_bar_values": [lo + (hi - lo) * (i + 0.5) / lb for i in range(lb)],
            "topkCosSimIndices": r["neighbour_features"], "topkCosSimValues": r["neighbour_cosines"]}


def _top_contexts(store: FeatureStore, sae: str, lo: int, hi: int, top: int) -> list[dict]:
    """The ``top`` contexts of every feature in [lo, hi), whole, with the feature's value on each token."""
    picks = store._sql("SELECT feature, context, m FROM (SELECT feature, context, max(value) AS m FROM {acts} "
                       "WHERE feature >= ? AND feature < ? GROUP BY feature, context) "
                       "QUALIFY row_number() OVER (PARTITION BY feature ORDER BY m DESC, context) <= ? "
                       "ORDER BY feature, m DESC", sae, [lo, hi, top])
    if not picks:
        return []
    ctxs = sorted({p["context"] for p in picks})
    marks = ",".join("?" * len(ctxs))
    toks = store._sql(f"SELECT context, position, token FROM {{tokens}} WHERE context IN ({marks}) "
                      "ORDER BY context, position", sae, ctxs)
    vals = store._sql(f"SELECT feature, context, position, value FROM {{acts}} WHERE feature >= ? AND feature < ? "
                      f"AND context IN ({marks})", sae, [lo, hi, *ctxs])
    by_ctx: dict[int, list[int]] = {}
    for t in toks:
        by_ctx.setdefault(t["context"], []).append(t["token"])
    at = {(v["feature"], v["context"], v["position"]): v["value"] for v in vals}
    vocab = store.vocab
    return [{"feature": p["feature"], "context": p["context"], "tokens": [vocab[t] for t in by_ctx[p["context"]]],
             "values": [at.get((p["feature"], p["context"], i), 0.0) for i in range(len(by_ctx[p["context"]]))]}
            for p in picks]


def _jsonl(path: Path, records: list[dict]) -> None:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(data, compresslevel=5) if path.suffix == ".gz" else data)
