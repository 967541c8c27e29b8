"""Mechanistic-interpretability analyses on one TransformerLens 4 hooked model.

Every public analysis is importable from here (``from interp import patch_sweep``); each is
loaded on first use (PEP 562), so ``import interp`` and ``interp --help`` do not pay for
torch and TransformerLens until an analysis runs.
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "interp.models": ["DEFAULT_MODEL", "list_models", "load_model"],
    "interp.errors": ["InterpError"],
    "interp.tokens": ["single_token", "str_tokens", "to_tokens"],
    "interp.circuits.attention": ["AttentionPatterns", "HeadScores", "attention_patterns", "detect_heads"],
    "interp.circuits.lens": ["LogitAttribution", "LogitLens", "direct_logit_attribution", "logit_lens"],
    "interp.metrics": ["Task", "make_task"],
    "interp.predictions": ["Prediction", "predict"],
    "interp.circuits.patching": ["PatchResult", "patch_sweep"],
    "interp.circuits.attribution": ["Agreement", "agreement", "attribution_sweep"],
    "interp.circuits.path_patching": ["path_patch", "path_patch_sweep"],
    "interp.circuits.eap": ["Circuit", "EdgeScores", "discover_circuit", "edge_attribution", "faithfulness_curve"],
    "interp.knowledge.tracing": ["Trace", "trace"],
    "interp.knowledge.average_trace": ["AverageTrace", "average_trace"],
    "interp.knowledge.rome": ["Edit", "RomeConfig", "edit"],
    "interp.knowledge.counterfact": ["EvalResult", "evaluate", "load_requests"],
    "interp.representations.probes": ["ProbeReport", "load_dataset", "probe_layers"],
    "interp.representations.steering": ["SteeringCurve", "mean_difference", "probe_direction", "steer", "steering_curve"],
    "interp.knowledge.relations": ["LRE", "Relation", "fit_lre", "list_relations", "load_relation", "lre_sweep"],
    "interp.knowledge.fact_recall": ["relation_circuit", "resample_sweep"],
    "interp.circuits.weights": ["composition_scores", "copying_scores", "head_weights", "mimetic_stats"],
    "interp.gcg": ["GCGConfig", "feature_objective", "target_objective"],  # the gcg function: interp.gcg.gcg
}
__all__, __getattr__, __dir__ = lazy_exports("interp", _EXPORTS, globals())
