"""Sparse autoencoders on the workbench's hooked models.

Four architectures share one base (:class:`saes.base.SAE`): ReLU + L1, TopK, BatchTopK
and JumpReLU, each in its own file. Files use SAELens's layout (:mod:`saes.io`).
:mod:`saes.activations` streams activations (stopping at the hooked layer, optionally
cached on disk), :mod:`saes.train` trains on one hook (exact resume, DDP under
``torchrun``), and :mod:`saes.evaluate` measures L0, FVU and CE loss recovered.

Features: :mod:`saes.extract` writes an SAE's activations over a corpus into a Parquet
store that :mod:`saes.store` queries with DuckDB; :mod:`saes.feature_stats` computes the
per-feature tables, :mod:`saes.dashboard` a feature page, :mod:`saes.export` Neuronpedia's
layout, :mod:`saes.steer` clamps a feature during generation and :mod:`saes.autointerp`
explains and scores it.
"""

from saes.base import SAE, SAELoss, SAEOutput
from saes.batchtopk import BatchTopKSAE
from saes.config import ARCHITECTURES, SAEConfig
from saes.dashboard import FeatureDashboard, feature_dashboard
from saes.extract import ExtractConfig, extract_features
from saes.io import load_sae, make_sae, resolve_hook, save_sae
from saes.jumprelu import JumpReLUSAE
from saes.relu import ReluSAE
from saes.steer import steer_feature
from saes.store import FeatureStore
from saes.topk import TopKSAE

__all__ = ["SAE", "SAELoss", "SAEOutput", "SAEConfig", "ARCHITECTURES", "ReluSAE", "TopKSAE", "BatchTopKSAE",
           "JumpReLUSAE", "make_sae", "save_sae", "load_sae", "resolve_hook", "ExtractConfig", "extract_features",
           "FeatureStore", "FeatureDashboard", "feature_dashboard", "steer_feature"]
