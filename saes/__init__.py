"""Sparse autoencoders on the workbench's hooked models.

Four architectures share one base (:class:`saes.base.SAE`): ReLU + L1, TopK, BatchTopK
and JumpReLU, each in its own file. Files use SAELens's layout (:mod:`saes.io`).
:mod:`saes.activations` streams activations (stopping at the hooked layer, optionally
cached on disk), :mod:`saes.train` trains on one hook (exact resume, DDP under
``torchrun``), and :mod:`saes.evaluate` measures L0, FVU and CE loss recovered.

Features: :mod:`saes.features.extract` writes an SAE's activations over a corpus into a Parquet
store that :mod:`saes.features.store` queries with DuckDB; :mod:`saes.features.stats` computes the
per-feature tables, :mod:`saes.features.dashboard` a feature page, :mod:`saes.features.export` Neuronpedia's
layout, :mod:`saes.features.steer` clamps a feature during generation and :mod:`saes.features.autointerp`
explains and scores it.

Names load on first use (PEP 562), so reading a store (:mod:`saes.features.store`) does not import torch.
"""

from __future__ import annotations

from interp._lazy import lazy_exports

_EXPORTS = {
    "saes.base": ["SAE", "SAELoss", "SAEOutput"],
    "saes.batchtopk": ["BatchTopKSAE"],
    "saes.config": ["ARCHITECTURES", "SAEConfig"],
    "saes.features.dashboard": ["FeatureDashboard", "feature_dashboard"],
    "saes.features.extract": ["ExtractConfig", "extract_features"],
    "saes.io": ["load_sae", "make_sae", "resolve_hook", "save_sae"],
    "saes.jumprelu": ["JumpReLUSAE"],
    "saes.relu": ["ReluSAE"],
    "saes.features.steer": ["steer_feature"],
    "saes.features.store": ["FeatureStore"],
    "saes.topk": ["TopKSAE"],
}
__all__, __getattr__, __dir__ = lazy_exports("saes", _EXPORTS, globals())
