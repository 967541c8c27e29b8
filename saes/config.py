"""SAE configuration: one dataclass for every architecture, saved as SAELens's ``cfg.json``."""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

from interp.errors import InterpError

__all__ = ["ARCHITECTURES", "CFG", "SAEConfig", "WEIGHTS", "check_sae_dir"]

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
"""The SAELens layout's two files in an SAE directory (:mod:`saes.io` reads and writes them)."""


def check_sae_dir(path: str | Path) -> Path:
    """Refuse, in one line and without torch, a path that cannot be an SAE directory: a missing
    path, a file, or a feature store given where its SAE belongs."""
    path = Path(path)
    if not path.exists():
        raise InterpError(f"{path} is not an SAE directory: it does not exist")
    if not path.is_dir():
        raise InterpError(f"{path} is a file, not an SAE directory (a folder with {CFG} and {WEIGHTS})")
    if (path / "set.json").exists() and not (path / CFG).exists():
        raise InterpError(f"{path} is a set of per-layer dictionaries; give one layer's folder (e.g. {path}/layer_0) "
                          "or a command that takes a set (sae eval, graph)")
    if (path / "manifest.json").exists() and not (path / CFG).exists():
        try:
            dirs = [s.get("dir", s.get("name")) for s in json.loads((path / "manifest.json").read_text())["saes"]]
        except (ValueError, KeyError, TypeError):
            dirs = []
        raise InterpError(f"{path} is a feature store, not an SAE directory" +
                          (f"; its SAE is {', '.join(map(str, dirs))}" if dirs else ""))
    return path


Architecture = Literal["relu", "topk", "batchtopk", "jumprelu"]
ARCHITECTURES: tuple[str, ...] = ("relu", "topk", "batchtopk", "jumprelu")
# SAELens's names for the same architectures (its "standard" is ReLU + L1).
_TO_SAELENS = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
_FROM_SAELENS = {"standard": "relu", "topk": "topk", "batchtopk": "batchtopk", "jumprelu": "jumprelu"}


@dataclass
class SAEConfig:
    """What defines an SAE and where it reads from."""

    architecture: Architecture
    """relu (L1, Anthropic April 2024), topk (Gao et al. 2024), batchtopk (Bussmann et al. 2024),
    jumprelu (Rajamanoharan et al. 2024)."""
    d_in: int
    """Width of the hooked activation (d_model for the residual stream)."""
    d_sae: int
    """Number of latents."""
    hook_name: str = ""
    """The bridge hook the SAE reads, e.g. ``blocks.15.hook_resid_post``."""
    model_name: str = ""
    k: int = 32
    """Active latents per token (topk) or on average per token (batchtopk)."""
    l1_coefficient: float = 5.0
    """λ of the ReLU SAE's decoder-norm-weighted L1 penalty."""
    l0_coefficient: float = 1.0
    """λ of the JumpReLU SAE's L0 penalty."""
    jumprelu_bandwidth: float = 0.05
    """ε of the straight-through estimator's rectangle kernel, in the scaled space (E‖x'‖ = √d_in,
    where pre-activations are O(1); SAELens's default for the same scaling)."""
    jumprelu_init_threshold: float = 0.01
    """θ for every latent at initialisation (the trainer can instead set it from data: ``init_l0``)."""
    aux_k: int = 512
    """Dead latents used by the AuxK loss (topk, batchtopk)."""
    aux_coefficient: float = 1 / 32
    hook_out: str = ""
    """A transcoder's target hook, e.g. ``blocks.15.hook_mlp_out`` ("": an SAE, whose target is its input)."""
    skip: bool = False
    """A transcoder's linear skip path ``W_skip`` (Paulo, Shabalin & Belrose 2025)."""
    dtype: str = "float32"
    train_corpus: str = ""
    """:func:`interp.corpus.corpus_id` of the corpus the SAE was trained on ("": not recorded)."""
    train_tokens_end: int = 0
    """The SAE trained on that corpus's packed token stream up to this token (0: not recorded), so
    evaluation can start past it (``sae eval`` skips these rows by default)."""

    def __post_init__(self):
        if self.architecture not in ARCHITECTURES:
            raise InterpError(f"unknown SAE architecture {self.architecture!r}; choose one of "
                              f"{', '.join(ARCHITECTURES)}")
        if self.d_in < 1 or self.d_sae < 1:
            raise InterpError(f"SAE sizes must be positive (d_in {self.d_in}, d_sae {self.d_sae})")
        if self.architecture in ("topk", "batchtopk") and not 1 <= self.k <= self.d_sae:
            raise InterpError(f"k must be between 1 and d_sae ({self.d_sae}), not {self.k}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> "SAEConfig":
        """From our own keys; unknown keys warn instead of failing."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(raw) - known)
        if extra:
            warnings.warn(f"SAE config: ignoring unknown keys {extra}", stacklevel=2)
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_saelens(self) -> dict[str, Any]:
        """SAELens v6's ``cfg.json`` fields (read by its loader and Neuronpedia's exports).
        A BatchTopK SAE is saved as JumpReLU, its inference form."""
        cfg = {"architecture": _TO_SAELENS[self.architecture], "d_in": self.d_in, "d_sae": self.d_sae,
               "dtype": self.dtype, "device": "cpu", "apply_b_dec_to_input": True,
               "normalize_activations": "none", "reshape_activations": "none",
               "metadata": {"model_name": self.model_name, "hook_name": self.hook_name,
                            **({"hook_name_out": self.hook_out} if self.hook_out else {}),
                            "prepend_bos": False},
               "interp": self.to_dict()}
        if self.architecture == "topk":
            cfg["k"] = self.k
        return cfg

    @classmethod
    def from_saelens(cls, raw: dict[str, Any]) -> "SAEConfig":
        """From a SAELens ``cfg.json`` of any version (v6 nests the hook under ``metadata``;
        older files use ``hook_point`` and ``activation_fn_kwargs``)."""
        if isinstance(raw.get("interp"), dict):
            own = cls.from_dict(raw["interp"])
            if own.architecture == "batchtopk":  # saved in its JumpReLU form
                own.architecture = "jumprelu"
            return own
        meta = raw.get("metadata") or {}
        arch = raw.get("architecture") or ("topk" if raw.get("activation_fn_str") == "topk" else "standard")
        if arch not in _FROM_SAELENS:
            raise InterpError(f"SAE architecture {arch!r} is not supported (standard, topk, jumprelu are)")
        try:
            d_in, d_sae = int(raw["d_in"]), int(raw["d_sae"])
        except (KeyError, TypeError, ValueError) as err:
            raise InterpError("SAE cfg.json lacks integer d_in and d_sae") from err
        k = raw.get("k") or (raw.get("activation_fn_kwargs") or {}).get("k") or 32
        return cls(_FROM_SAELENS[arch], d_in, d_sae,
                   hook_name=meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point") or "",
                   model_name=meta.get("model_name") or raw.get("model_name") or "", k=int(min(k, d_sae)),
                   dtype=str(raw.get("dtype", "float32")).replace("torch.", ""))
