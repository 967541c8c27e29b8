"""Gemma Scope 2's per-layer dictionaries (Google DeepMind, for Gemma 3), read exactly from a local copy
laid out as the release is:

    {resid_post,mlp_out,attn_out,transcoder}[_all]/layer_{L}_width_{W}_l0_{small|medium|big}[_affine]/
        params.safetensors   w_enc [d_in, W], w_dec [W, d_out], b_enc [W], b_dec [d_out], threshold [W],
                             and affine_skip_connection [d_in, d_out] in the affine folders
        config.json          architecture (jump_relu), hf_hook_point_in, hf_hook_point_out,
                             affine_connection, width, l0

**The maths**, on raw activations (no input normalisation, no b_dec taken from the input):
z = x w_enc + b_enc, f = z · 1[z > θ], and the reconstruction f w_dec + b_dec + x · skip. In our
terms (:mod:`saes.base`) that is a JumpReLU dictionary with scales 1: an SAE's encoder subtracts
b_dec from its input, so its b_enc becomes b_enc + b_dec w_enc (summed in float64); a transcoder's
input bias is 0 and its W_skip is the skip's transpose. θ is kept as log θ, so it reads back within
an ulp.

**The hooks**, Hugging Face module paths to the bridge's (:data:`HOOKS`): a layer's output is
``hook_resid_post``; ``pre_feedforward_layernorm.output`` is the MLP's normed input ``ln2.hook_out``
(where a transcoder reads); ``post_feedforward_layernorm.output`` is ``hook_mlp_out`` (what the MLP
adds to the residual, after its post-norm: a transcoder's target and the mlp_out SAEs' site); and
``self_attn.o_proj.input``, the heads concatenated before ``o_proj`` (d_in = heads × head_dim), is
``attn.o.hook_in``.

Every file is checked on load (some uploads of the release were broken): the config's keys, every
tensor's presence, shape, floating dtype and finiteness, a non-negative θ; a failure is one line.
"""

from __future__ import annotations

import glob
import json
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from interp.errors import InterpError
from saes.config import SAEConfig
from saes.jumprelu import JumpReLUSAE

__all__ = ["CONFIG", "HOOKS", "MODEL", "PARAMS", "checked_tensor", "is_gemma_scope", "load_gemma_scope",
           "load_gemma_scope_layers", "read_tensors", "workbench_hook"]

PARAMS, CONFIG = "params.safetensors", "config.json"
MODEL = "google/gemma-3-270m"
"""The model a folder is for when its config names none."""
HOOKS = {
    r"model\.layers\.(\d+)\.output": "blocks.{l}.hook_resid_post",
    r"model\.layers\.(\d+)\.pre_feedforward_layernorm\.output": "blocks.{l}.ln2.hook_out",
    r"model\.layers\.(\d+)\.post_feedforward_layernorm\.output": "blocks.{l}.hook_mlp_out",
    r"model\.layers\.(\d+)\.self_attn\.o_proj\.input": "blocks.{l}.attn.o.hook_in",
}
"""Gemma Scope 2's hook points (Hugging Face module paths) → the bridge's hooks (module docstring)."""
FOLDER = re.compile(r"layer_(\d+)_width_(\w+?)_l0_(\w+?)(_affine)?$")


def is_gemma_scope(path: str | Path) -> bool:
    """Whether ``path`` is one of the release's dictionary folders (``params.safetensors``, no cfg.json)."""
    return (Path(path) / PARAMS).exists()


def workbench_hook(hf_hook: str) -> tuple[str, int]:
    """The bridge's hook for a Gemma Scope 2 hook point, and its layer; refused in one line if unknown."""
    for pattern, hook in HOOKS.items():
        m = re.fullmatch(pattern, hf_hook)
        if m:
            return hook.format(l=m.group(1)), int(m.group(1))
    raise InterpError(f"hook point {hf_hook!r} is not one of Gemma Scope 2's that the workbench maps "
                      f"(model.layers.L.output, .pre_feedforward_layernorm.output, "
                      ".post_feedforward_layernorm.output, .self_attn.o_proj.input)")


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise InterpError(f"{path} is missing") from None
    except (SafetensorError, OSError, ValueError) as err:
        raise InterpError(f"{path} is corrupt or truncated ({err})") from None


def checked_tensor(path: Path, raw: dict[str, torch.Tensor], name: str, shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """``raw[name]`` in float32, refused in one line unless present, of ``shape`` (None: any), floating, finite."""
    if name not in raw:
        raise InterpError(f"{path} lacks {name} (it has {', '.join(sorted(raw))})")
    t = raw[name]
    if shape is not None and tuple(t.shape) != shape:
        raise InterpError(f"{path}: {name} has shape {tuple(t.shape)}, where {shape} was expected")
    if not t.is_floating_point():
        raise InterpError(f"{path}: {name} is {t.dtype}, not a floating-point tensor")
    if not torch.isfinite(t).all():
        raise InterpError(f"{path}: {name} has {int((~torch.isfinite(t)).sum())} non-finite values (NaN or inf)")
    return t.float()


def _config(path: Path) -> dict:
    try:
        cfg = json.loads((path / CONFIG).read_text())
    except FileNotFoundError:
        raise InterpError(f"{path} has {PARAMS} but no {CONFIG}") from None
    except json.JSONDecodeError as err:
        raise InterpError(f"{path / CONFIG} is not JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(cfg, dict):
        raise InterpError(f"{path / CONFIG} is not a JSON object")
    arch = str(cfg.get("architecture", "jump_relu")).lower().replace("-", "_")
    if arch not in ("jump_relu", "jumprelu"):
        raise InterpError(f"{path / CONFIG}: architecture {cfg.get('architecture')!r}; the reader knows Gemma Scope 2's "
                          "jump_relu")
    return cfg


def load_gemma_scope(path: str | Path, device: str = "cpu") -> JumpReLUSAE:
    """One of the release's dictionary folders as a JumpReLU SAE or transcoder (module docstring)."""
    path = Path(path)
    cfg = _config(path)
    m = FOLDER.search(path.name)
    hf_in = cfg.get("hf_hook_point_in")
    hf_out = cfg.get("hf_hook_point_out", hf_in)
    if not isinstance(hf_in, str):
        raise InterpError(f"{path / CONFIG} names no hf_hook_point_in")
    hook_in, layer = workbench_hook(hf_in)
    hook_out, layer_out = workbench_hook(hf_out)
    if layer_out != layer:
        raise InterpError(f"{path / CONFIG}: reads layer {layer} and writes layer {layer_out}; a per-layer "
                          "dictionary writes its own layer")
    affine = bool(cfg.get("affine_connection", bool(m and m.group(4))))
    file = path / PARAMS
    raw = read_tensors(file)
    w_enc = checked_tensor(file, raw, "w_enc")
    if w_enc.dim() != 2:
        raise InterpError(f"{file}: w_enc has shape {tuple(w_enc.shape)}, not [d_in, width]")
    d_in, width = w_enc.shape
    if cfg.get("width") is not None and int(cfg["width"]) != width:
        raise InterpError(f"{path}: w_enc has {width} latents, but {CONFIG} says width {cfg['width']}")
    w_dec = checked_tensor(file, raw, "w_dec")
    d_out = w_dec.shape[-1]
    t = {"w_enc": w_enc, "w_dec": checked_tensor(file, raw, "w_dec", (width, d_out)),
         "b_enc": checked_tensor(file, raw, "b_enc", (width,)), "b_dec": checked_tensor(file, raw, "b_dec", (d_out,)),
         "threshold": checked_tensor(file, raw, "threshold", (width,))}
    if affine:
        t["affine_skip_connection"] = checked_tensor(file, raw, "affine_skip_connection", (d_in, d_out))
    if (t["threshold"] < 0).any():
        raise InterpError(f"{path / PARAMS}: threshold has {int((t['threshold'] < 0).sum())} negative values")
    transcoder = hook_out != hook_in
    if d_in != d_out:
        raise InterpError(f"{path}: reads {d_in} dimensions and writes {d_out}; the workbench's dictionaries "
                          "write the width they read")
    if affine and not transcoder:
        raise InterpError(f"{path}: an affine skip on an SAE (it reads and writes {hook_in})")
    config = SAEConfig("jumprelu", d_in, width, hook_name=hook_in, model_name=str(cfg.get("model_name", MODEL)),
                       hook_out=hook_out if transcoder else "", skip=affine)
    sae = JumpReLUSAE(config)
    with torch.no_grad():
        sae.W_enc.copy_(t["w_enc"])
        sae.W_dec.copy_(t["w_dec"])
        sae.b_dec.copy_(t["b_dec"])
        if transcoder:  # pre = (x − b_in) W_enc + b_enc with b_in = 0
            sae.b_enc.copy_(t["b_enc"])
            if affine:
                sae.W_skip.copy_(t["affine_skip_connection"].T)
        else:  # pre = (x − b_dec) W_enc + b_enc': b_enc' = b_enc + b_dec W_enc gives x W_enc + b_enc
            sae.b_enc.copy_((t["b_enc"].double() + t["b_dec"].double() @ t["w_enc"].double()).float())
        sae.log_threshold.copy_(t["threshold"].double().log().float())  # θ = 0 reads back as 0
    return sae.to(device).eval()


def load_gemma_scope_layers(pattern: str | Path, device: str = "cpu") -> dict[int, JumpReLUSAE]:
    """A transcoder set's dictionaries by layer, from the release's per-layer folders: ``pattern`` is a
    folder holding one dictionary per layer, or a glob over folders (``transcoder_all/layer_*_width_16k_l0_small``)
    where the release holds several per layer (:func:`saes.transcoder.load_set` makes the set)."""
    pattern = str(pattern)
    if any(c in pattern for c in "*?["):
        folders = [Path(p) for p in sorted(glob.glob(pattern)) if is_gemma_scope(p)]
    elif Path(pattern).is_dir():
        folders = [d for d in sorted(Path(pattern).iterdir()) if d.is_dir() and is_gemma_scope(d)]
    else:
        folders = []
    if not folders:
        raise InterpError(f"{pattern} holds no Gemma Scope 2 dictionary folders (layer_L_width_W_l0_X with {PARAMS})")
    by_layer: dict[int, list[Path]] = {}
    for d in folders:
        m = FOLDER.search(d.name)
        layer = int(m.group(1)) if m else workbench_hook(str(_config(d).get("hf_hook_point_in", "")))[1]
        by_layer.setdefault(layer, []).append(d)
    several = {layer: ds for layer, ds in by_layer.items() if len(ds) > 1}
    if several:
        layer, ds = min(several.items())
        variants = sorted(d.name.split("_", 2)[-1] for d in ds)
        raise InterpError(f"{pattern} holds {len(ds)} dictionaries for layer {layer} ({', '.join(variants)}): choose "
                          f"one with a quoted pattern, e.g. '{Path(pattern) / ('layer_*_' + variants[0])}'")
    layers = {layer: load_gemma_scope(ds[0], device) for layer, ds in sorted(by_layer.items())}
    if not all(sae.is_transcoder for sae in layers.values()):
        raise InterpError(f"{pattern} holds SAEs, not transcoders: a set for graphs needs transcoder folders")
    return layers
