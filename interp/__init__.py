"""Mechanistic-interpretability analyses on one TransformerLens 4 hooked model."""

from interp.attention import AttentionPatterns, HeadScores, attention_patterns, detect_heads
from interp.errors import InterpError
from interp.lens import LogitAttribution, LogitLens, direct_logit_attribution, logit_lens
from interp.models import DEFAULT_MODEL, list_models, load_model
from interp.tokens import single_token, str_tokens, to_tokens

__all__ = [
    "DEFAULT_MODEL", "AttentionPatterns", "HeadScores", "InterpError", "LogitAttribution",
    "LogitLens", "attention_patterns", "detect_heads", "direct_logit_attribution",
    "list_models", "load_model", "logit_lens", "single_token", "str_tokens", "to_tokens",
]
