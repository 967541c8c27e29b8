"""SAELens-layout files: ``cfg.json`` + ``sae_weights.safetensors``.

Weights are ``W_enc [d_in, d_sae]``, ``W_dec [d_sae, d_in]``, ``b_enc [d_sae]``,
``b_dec [d_in]`` and, for JumpReLU (and BatchTopK, saved as JumpReLU), ``threshold
[d_sae]``. Files are written with the input scale folded in, each to a temporary
sibling moved into place (weights first, then the config that names them). Loading checks every shape against the config
and reads safetensors only (never pickles).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp.cache import atomic_path
from interp.errors import InterpError, check_hook
from saes.base import SAE
from saes.batchtopk import BatchTopKSAE
from saes.config import CFG, WEIGHTS, SAEConfig, check_sae_dir
from saes.gemma_scope import is_gemma_scope, load_gemma_scope
from saes.jumprelu import JumpReLUSAE
from saes.relu import ReluSAE
from saes.topk import TopKSAE

__all__ = ["check_sae_dir", "CLASSES", "load_sae", "make_sae", "resolve_hook", "save_sae"]

CLASSES: dict[str, type[SAE]] = {"relu": ReluSAE, "topk": TopKSAE, "batchtopk": BatchTopKSAE,
                                 "jumprelu": JumpReLUSAE}


def make_sae(cfg: SAEConfig) -> SAE:
    """A freshly initialised SAE of ``cfg.architecture``."""
    return CLASSES[cfg.architecture](cfg)


def save_sae(sae: SAE, path: str | Path) -> Path:
    """Write the SAELens layout at ``path`` (atomically; the live SAE is left as it is)."""
    out = copy.deepcopy(sae).cpu()
    if isinstance(out, BatchTopKSAE):
        out = out.to_jumprelu()
    out.fold_input_scale_()
    tensors = {"W_enc": out.W_enc, "W_dec": out.W_dec, "b_enc": out.b_enc, "b_dec": out.b_dec,
               **out.extra_tensors()}
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)  # other files there (a training run's) are kept
    with atomic_path(path / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    with atomic_path(path / CFG) as tmp:
        tmp.write_text(json.dumps(out.cfg.to_saelens(), indent=1) + "\n")
    return path


def load_sae(path: str | Path, device: str = "cpu") -> SAE:
    """Any SAELens-format directory (ours, or one downloaded from a SAELens release), or one of Gemma Scope
    2's dictionary folders (:mod:`saes.gemma_scope`)."""
    path = Path(path)
    check_sae_dir(path)
    if is_gemma_scope(path) and not (path / CFG).exists():
        return load_gemma_scope(path, device)
    try:
        raw = json.loads((path / CFG).read_text())
    except FileNotFoundError as err:
        if (path / "checkpoint.pt").exists():
            raise InterpError(f"{path} is an unfinished training run (a checkpoint, no saved SAE yet); run the "
                              "`interp sae train` command that made it again: it resumes and saves the SAE") from err
        raise InterpError(f"{path} is not an SAE directory: {CFG} is missing") from err
    except json.JSONDecodeError as err:
        raise InterpError(f"{path / CFG} is not JSON: {err.msg} at line {err.lineno}") from err
    cfg = SAEConfig.from_saelens(raw)
    try:
        tensors = load_file(str(path / WEIGHTS))
    except FileNotFoundError as err:
        raise InterpError(f"{path} has no {WEIGHTS}") from err
    except (SafetensorError, OSError, ValueError) as err:
        raise InterpError(f"{path / WEIGHTS} is corrupt or truncated ({err})") from err
    want = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in), "b_enc": (cfg.d_sae,),
            "b_dec": (cfg.d_in,)}
    if cfg.architecture == "jumprelu":
        want["threshold"] = (cfg.d_sae,)
    if cfg.hook_out and cfg.skip:
        want["W_skip"] = (cfg.d_in, cfg.d_in)
    for name, shape in want.items():
        if name not in tensors:
            raise InterpError(f"{path / WEIGHTS} lacks {name}")
        if tuple(tensors[name].shape) != shape:
            raise InterpError(f"{path / WEIGHTS}: {name} has shape {tuple(tensors[name].shape)}, but cfg.json "
                              f"(d_in {cfg.d_in}, d_sae {cfg.d_sae}) needs {shape}")
    sae = make_sae(cfg)  # a transcoder's file is folded: b_in stays 0
    with torch.no_grad():
        for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
            getattr(sae, name).copy_(tensors[name])
    sae.load_extra_tensors_(tensors)
    return sae.to(device).eval()


def resolve_hook(model, sae: SAE, force: bool = False) -> str:
    """The bridge hook an SAE reads, checked against the model: the SAE must have been trained on
    this model (unless ``force``: its ``cfg.json`` names another), the hook must exist, and its
    width must be the SAE's d_in. SAELens's legacy ``hook_point`` names are the bridge's legacy names."""
    name = sae.cfg.hook_name
    trained_on = sae.cfg.model_name
    if trained_on and not force and _model_key(trained_on) != _model_key(model.cfg.model_name):
        raise InterpError(f"the SAE was trained on {trained_on!r} ({name}), not on {model.cfg.model_name!r}; "
                          f"load that model with --model, or pass --force to use it anyway")
    check_hook(model, name)
    with torch.no_grad():
        _, cache = model.run_with_cache(torch.zeros(1, 2, dtype=torch.long, device=model.cfg.device),
                                        names_filter=name)
    width = cache[name].shape[-1]
    if cache[name].dim() == 4 and cache[name].shape[-2] * width == sae.cfg.d_in:
        raise InterpError(f"the SAE reads {name} with its {cache[name].shape[-2]} heads concatenated (d_in {sae.cfg.d_in}, "
                          "Gemma Scope 2's attn_out); it loads and computes, but the workbench's SAE jobs read one "
                          "vector per position and do not attach a per-head hook yet")
    if width != sae.cfg.d_in:
        raise InterpError(f"SAE d_in {sae.cfg.d_in} (trained on {trained_on or 'an unrecorded model'}, {name}) does "
                          f"not match hook {name} of {model.cfg.model_name}, of width {width}")
    return name


def _model_key(name: str) -> str:
    """A model name without its organisation or letter case, so ``HuggingFaceTB/SmolLM2-135M-Instruct``,
    the alias ``smollm2-135m`` and SAELens's own spellings compare equal."""
    from interp.models import ALIASES

    key = name.lower().rsplit("/", 1)[-1]
    return ALIASES.get(key, key).removesuffix("-instruct")
