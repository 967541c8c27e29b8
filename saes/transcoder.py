"""Transcoder sets: one dictionary per layer, as the replacement model and attribution graphs use them.

A transcoder is an :class:`saes.base.SAE` whose ``cfg.hook_out`` differs from its input hook
(the formula is in :mod:`saes.base`). A multi-layer training run (``sae train --layers``)
writes one directory:

    DIR/set.json                   the manifest: kind, model, hook templates, layer -> folder
    DIR/layer_{l}/                 each layer's dictionary in our SAELens-style layout (cfg.json +
                                   sae_weights.safetensors with W_skip; both hooks in cfg.json),
                                   with its checkpoint.pt, metrics.jsonl and train_config.json
    DIR/config.yaml                circuit-tracer's transcoder-set config (transcoders only)
    DIR/layer_{l}.safetensors      circuit-tracer's per-layer files

:func:`load_set` reads our layout, circuit-tracer's (``config.yaml`` with ``model_kind:
transcoder_set``; ``layer_{i}.safetensors`` with ``W_enc``/``W_dec`` ``[d_tc, d_model]``,
``b_enc``, ``b_dec``, optional ``W_skip`` and ``activation_function.threshold``), and
EleutherAI sparsify checkpoints (a folder per hookpoint, ``layers.{i}.mlp``, with ``cfg.json``
and ``sae.safetensors``: ``encoder.weight``/``encoder.bias``, ``W_dec``, ``b_dec``, ``W_skip``),
whose MLP hookpoints map to the bridge's ``blocks.{i}.mlp.hook_in`` → ``blocks.{i}.hook_mlp_out``, and
Gemma Scope 2's per-layer transcoder folders (:mod:`saes.gemma_scope`).

Two differences from the other layouts' formulas, both exact in our terms: their encoders have no
input bias (ours is folded into ``b_enc`` on saving), and circuit-tracer's TopK keeps a negative
value among the top k where ours (and sparsify's) clip it to 0.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from interp.architectures import parse_layers  # re-exported: the one --layers parser
from interp.cache import atomic_path
from interp.errors import InterpError
from saes.base import SAE
from saes.clt import CLTLayer, CrossLayerTranscoder, load_clt
from saes.gemma_scope import MODEL, is_gemma_scope, load_gemma_scope_layers
from saes.config import CFG, WEIGHTS, SAEConfig
from saes.io import load_sae, make_sae

__all__ = ["CLTSet", "INPUT_TEMPLATES", "OUTPUT_TEMPLATES", "SET", "TranscoderSet", "check_transcoder_hooks", "layer_dir",
           "load_set", "parse_layers", "save_circuit_tracer", "write_set_manifest"]

SET = "set.json"
INPUT_TEMPLATES = ("blocks.{l}.hook_resid_mid", "blocks.{l}.mlp.hook_in", "blocks.{l}.ln2.hook_out")
"""An MLP's input: the residual stream before its norm (the default), or the normalised input itself."""
OUTPUT_TEMPLATES = ("blocks.{l}.hook_mlp_out", "blocks.{l}.mlp.hook_out")
_CT_ACTIVATIONS = {"topk": "topk", "relu": "relu", "jumprelu": "jumprelu", "batchtopk": "jumprelu"}


def layer_dir(layer: int) -> str:
    return f"layer_{layer}"


def check_transcoder_hooks(hook: str, hook_out: str) -> None:
    """Refuse a transcoder whose input is not an MLP's input or whose output is not that MLP's output."""
    if hook not in INPUT_TEMPLATES:
        raise InterpError(f"--transcoder reads an MLP's input; {hook!r} is not one (use {', '.join(INPUT_TEMPLATES)})")
    if hook_out not in OUTPUT_TEMPLATES:
        raise InterpError(f"--transcoder predicts an MLP's output; {hook_out!r} is not one "
                          f"(use {', '.join(OUTPUT_TEMPLATES)})")


@dataclass
class TranscoderSet:
    """Dictionaries by layer. ``transcoders`` is False for a set of SAEs (``sae train --layers`` without
    ``--transcoder``). Each dictionary's ``cfg.hook_name`` (and ``cfg.hook_out``) name its hooks."""

    layers: dict[int, SAE]
    model_name: str = ""
    source: str = "interp"
    """The layout it was read from: interp, circuit-tracer or sparsify."""
    path: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def transcoders(self) -> bool:
        return all(s.is_transcoder for s in self.layers.values())

    @property
    def d_model(self) -> int:
        return next(iter(self.layers.values())).cfg.d_in

    def __getitem__(self, layer: int) -> SAE:
        try:
            return self.layers[layer]
        except KeyError:
            raise InterpError(f"the set has no dictionary for layer {layer} (it has layers "
                              f"{', '.join(map(str, sorted(self.layers)))})") from None

    def input_hook(self, layer: int) -> str:
        return self[layer].cfg.hook_name

    def output_hook(self, layer: int) -> str:
        return self[layer].cfg.hook_out or self[layer].cfg.hook_name

    def predict(self, layer: int, inputs: dict[int, torch.Tensor], codes: dict[int, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(layer ``layer``'s predicted MLP output, its codes) from the MLP inputs ``inputs`` (layer → [n, d]);
        ``codes`` caches each layer's codes for the layers that follow (a CLT reads earlier layers')."""
        out = self[layer](inputs[layer])
        codes[layer] = out.feature_acts
        return out.x_hat, out.feature_acts

    def to(self, device) -> "TranscoderSet":
        for s in self.layers.values():
            s.to(device)
        return self

    def check_model(self, model, force: bool = False) -> None:
        """Refuse a set trained on another model, or whose width is not the model's d_model, or with
        a layer the model lacks."""
        from saes.io import _model_key

        if self.model_name and not force and _model_key(self.model_name) != _model_key(model.cfg.model_name):
            raise InterpError(f"the transcoders were trained on {self.model_name!r}, not on {model.cfg.model_name!r}; "
                              "load that model with --model, or pass --force")
        if self.d_model != model.cfg.d_model:
            raise InterpError(f"the transcoders read width {self.d_model}, but {model.cfg.model_name} has d_model "
                              f"{model.cfg.d_model}")
        bad = [layer for layer in self.layers if not 0 <= layer < model.cfg.n_layers]
        if bad:
            raise InterpError(f"the set has layer {bad[0]}, but {model.cfg.model_name} has {model.cfg.n_layers} layers")


class CLTSet(TranscoderSet):
    """A cross-layer transcoder where the workbench takes a set: ``layers`` are its per-layer views
    (:class:`saes.clt.CLTLayer`), and :meth:`decoders_into` gives the decoders that write into a layer (the
    replacement model and graphs ask :func:`interp.circuits.local_replacement.decoders_into`)."""

    def __init__(self, clt: CrossLayerTranscoder, path: str = ""):
        first = clt.first_layer
        super().__init__({first + i: CLTLayer(clt, i) for i in range(clt.n_layers)}, clt.model_name, "clt", path)
        self.clt = clt

    def decoders_into(self, layer: int) -> list[tuple[int, torch.Tensor]]:
        """(source layer i, its features' decoder rows into model layer ``layer`` [d_sae, d_model]) for every
        layer i of the CLT at or below it."""
        first = self.clt.first_layer
        return [(first + i, self.clt.W_dec[i][:, layer - first - i])
                for i in range(max(0, min(layer - first + 1, self.clt.n_layers)))]

    def predict(self, layer: int, inputs: dict[int, torch.Tensor], codes: dict[int, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """ŷ_l = Σ_{i ≤ l} f_i W_dec[i][:, l − i] + b_dec[l] + skip_l(x_l) (:mod:`saes.clt`), every layer's
        codes computed once into ``codes``."""
        clt, first = self.clt, self.clt.first_layer
        for i in range(first, layer + 1):
            if i not in codes:
                codes[i] = clt.encode(i - first, inputs[i])
        y = clt.b_dec[layer - first] + sum(codes[i] @ rows for i, rows in self.decoders_into(layer))
        if clt.W_skip is not None:
            x = inputs[layer].to(clt.W_skip.dtype)
            y = y + torch.nn.functional.linear(x, clt.W_skip[layer - first])
        return y, codes[layer]

    def to(self, device) -> "CLTSet":
        self.clt.to(device)
        return self


def write_set_manifest(out: str | Path, kind: str, model_name: str, hook: str, hook_out: str,
                       dirs: dict[int, str]) -> Path:
    """``DIR/set.json``: what the set is and which folder holds each layer (written atomically)."""
    out = Path(out)
    manifest = {"kind": kind, "model_name": model_name, "hook": hook, "hook_out": hook_out,
                "layers": {str(layer): d for layer, d in sorted(dirs.items())}}
    with atomic_path(out / SET) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return out / SET


def load_set(path: str | Path, device: str = "cpu") -> TranscoderSet:
    """A set in any of the four layouts (see the module docstring), detected from its files: for Gemma Scope
    2's, a folder of its per-layer transcoder folders or a quoted glob choosing one variant per layer. A
    cross-layer transcoder's folder (Gemma Scope 2's or circuit-tracer's files) gives a
    :class:`saes.clt.CLTSet`, which graphs take the same way."""
    if any(c in str(path) for c in "*?[") or (Path(path).is_dir() and any(
            d.is_dir() and is_gemma_scope(d) for d in Path(path).iterdir())):  # Gemma Scope 2's folders
        return TranscoderSet(load_gemma_scope_layers(path, device), MODEL, "gemma-scope-2", str(path))
    path = Path(path)
    if not path.is_dir():
        raise InterpError(f"{path} is not a transcoder set: {'it does not exist' if not path.exists() else 'a file'}")
    if (path / "params_layer_0.safetensors").exists() or (path / "W_enc_0.safetensors").exists():
        return CLTSet(load_clt(path, device), str(path))  # a cross-layer transcoder (saes.clt)
    if (path / SET).exists():
        tset = _load_own(path)
        if (path / "config.yaml").exists():
            refresh_ct_paths(path)
    elif (path / "config.yaml").exists():
        tset = load_circuit_tracer(path)
    elif any((d / "sae.safetensors").exists() for d in path.iterdir() if d.is_dir()):
        tset = load_sparsify(path)
    elif (path / CFG).exists():
        raise InterpError(f"{path} is a single SAE, not a set; train a set with --layers, or use it with `interp sae`")
    elif any((d / "checkpoint.pt").exists() for d in path.glob("layer_*")):
        raise InterpError(f"{path} is an unfinished set: its layers have checkpoints but no saved dictionaries yet; "
                          "run the `interp sae train` command that made it again: it resumes and finishes the set")
    else:
        raise InterpError(f"{path} is not a transcoder set: it has no {SET} (ours), config.yaml (circuit-tracer) or "
                          "per-hookpoint sae.safetensors (sparsify)")
    return tset.to(device)


def _load_own(path: Path) -> TranscoderSet:
    try:
        manifest = json.loads((path / SET).read_text())
        dirs = {int(k): v for k, v in manifest["layers"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise InterpError(f"{path / SET} is not a set manifest ({err})") from err
    missing = [layer for layer, d in dirs.items() if not ((path / d / WEIGHTS).exists() and (path / d / CFG).exists())]
    if missing:
        raise InterpError(f"{path} is an unfinished set: layer {missing[0]} has no saved dictionary yet "
                          f"({path / dirs[missing[0]]}); run the `interp sae train` command that made it again: it "
                          "resumes from its checkpoint and finishes the set")
    layers = {layer: load_sae(path / d) for layer, d in sorted(dirs.items())}
    return TranscoderSet(layers, manifest.get("model_name", ""), "interp", str(path), manifest)


# ---------------------------------------------------------------------------------------------- circuit-tracer


def save_circuit_tracer(tset: TranscoderSet, out: str | Path) -> Path:
    """circuit-tracer's layout beside ours: ``config.yaml`` and ``layer_{l}.safetensors`` per layer (folded
    weights: circuit-tracer's encoder has no input bias). Only transcoder sets can be written."""

    if not tset.transcoders:
        raise InterpError("circuit-tracer's layout holds transcoders; this set holds SAEs")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    first = next(iter(tset.layers.values())).cfg
    for layer, sae in sorted(tset.layers.items()):
        w = _folded(sae)
        tensors = {"W_enc": w["W_enc"].T, "W_dec": w["W_dec"], "b_enc": w["b_enc"], "b_dec": w["b_dec"]}
        if "W_skip" in w:
            tensors["W_skip"] = w["W_skip"]
        if "threshold" in w:
            tensors["activation_function.threshold"] = w["threshold"]
        with atomic_path(out / f"layer_{layer}.safetensors") as tmp:
            save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(tmp))
    with atomic_path(out / "config.yaml") as tmp:
        tmp.write_text(_ct_config(tset, out, first))
    return out / "config.yaml"


CT_TOPK_NOTE = ("# circuit-tracer 0.5's loader reads no activation key: a file with activation_function.threshold\n"
                "# loads as JumpReLU, any other as ReLU. It has no file form for TopK, so this set would load there\n"
                "# as ReLU (every positive pre-activation active). See docs/transcoders_and_graphs.md.\n")


def _ct_config(tset: TranscoderSet, out: Path, first) -> str:
    """``config.yaml`` as circuit-tracer 0.5's ``load_transcoders(config)`` reads it: ``model_kind``,
    ``scan``, the hooks, and ``transcoders`` as absolute paths (it opens them against the working
    directory, not the config's folder); ``model_name`` is the Hugging Face id its CLI loads, our short
    name ``interp_model``. ``activation`` and ``k`` are ours (it reads neither)."""
    import yaml

    from interp.architectures import BUILTIN

    spec = BUILTIN.get(tset.model_name)
    config = {"model_kind": "transcoder_set", "model_name": (spec.hf_id if spec and spec.hf_id else tset.model_name),
              "interp_model": tset.model_name, "scan": f"interp/{tset.model_name}/{out.resolve().name}",
              "feature_input_hook": _relative(first.hook_name), "feature_output_hook": _relative(first.hook_out),
              "activation": _CT_ACTIVATIONS[first.architecture],
              "transcoders": [str((out / f"layer_{layer}.safetensors").resolve()) for layer in sorted(tset.layers)]}
    if first.architecture == "topk":
        config["k"] = first.k
    return (CT_TOPK_NOTE if first.architecture == "topk" else "") + yaml.safe_dump(config, sort_keys=False)


def refresh_ct_paths(path: Path) -> None:
    """Point a set's ``config.yaml`` at its own files again after the folder moved (its ``transcoders``
    are absolute for circuit-tracer). Best effort: a read-only set is left as it is."""
    import yaml

    try:
        text = (path / "config.yaml").read_text()
        config = yaml.safe_load(text)
        files = config.get("transcoders") if isinstance(config, dict) else None
        if not files or all(Path(str(f)).is_absolute() and Path(str(f)).parent == path.resolve() for f in files):
            return
        config["transcoders"] = [str(path.resolve() / Path(str(f)).name) for f in files]
        note = CT_TOPK_NOTE if text.startswith(CT_TOPK_NOTE) else ""
        with atomic_path(path / "config.yaml") as tmp:
            tmp.write_text(note + yaml.safe_dump(config, sort_keys=False))
    except (OSError, yaml.YAMLError):
        return


def _folded(sae: SAE) -> dict[str, torch.Tensor]:
    """The weights with both scales and b_in folded in, as saved files hold them."""
    import copy

    from saes.batchtopk import BatchTopKSAE

    s = copy.deepcopy(sae).cpu()
    if isinstance(s, BatchTopKSAE):
        s = s.to_jumprelu()
    s.fold_input_scale_()
    return {"W_enc": s.W_enc, "W_dec": s.W_dec, "b_enc": s.b_enc, "b_dec": s.b_dec, **s.extra_tensors()}


def _relative(hook: str) -> str:
    """``blocks.3.hook_resid_mid`` -> ``hook_resid_mid``: circuit-tracer names hooks within a block."""
    return re.sub(r"^blocks\.\d+\.", "", hook)


def load_circuit_tracer(path: str | Path) -> TranscoderSet:
    """circuit-tracer's ``config.yaml`` + ``layer_{i}.safetensors`` (local files)."""
    import yaml

    path = Path(path)
    try:
        config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    except yaml.YAMLError as err:
        raise InterpError(f"{path / 'config.yaml'} is not YAML ({err})") from err
    if not isinstance(config, dict) or config.get("model_kind") != "transcoder_set":
        kind = config.get("model_kind") if isinstance(config, dict) else None
        raise InterpError(f"{path / 'config.yaml'}: model_kind {kind!r} is not supported (transcoder_set is)")
    for key in ("feature_input_hook", "feature_output_hook"):
        if not isinstance(config.get(key), str):
            raise InterpError(f"{path / 'config.yaml'} lacks {key}")
    files = config.get("transcoders")
    if files:  # relative names are the config's folder's; absolute ones too once the folder has moved
        paths = {i: Path(str(f)) if Path(str(f)).is_absolute() and Path(str(f)).exists() else path / Path(str(f)).name
                 for i, f in enumerate(files)}
    else:
        paths = {int(m.group(1)): p for p in path.glob("layer_*.safetensors")
                 if (m := re.fullmatch(r"layer_(\d+)\.safetensors", p.name))}
    if not paths:
        raise InterpError(f"{path}: config.yaml names no transcoders and there is no layer_*.safetensors")
    activation = str(config.get("activation") or "").lower()
    model_name = str(config.get("interp_model") or config.get("model_name") or "")  # ours, else its HF id
    layers = {}
    for layer, file in sorted(paths.items()):
        t = _read(file)
        for key in ("W_enc", "W_dec", "b_enc", "b_dec"):
            if key not in t:
                raise InterpError(f"{file} lacks {key}")
        d_tc, d_model = t["W_enc"].shape if t["W_enc"].dim() == 2 else (0, 0)
        _shapes(file, t, {"W_enc": (d_tc, d_model), "W_dec": (d_tc, d_model), "b_enc": (d_tc,), "b_dec": (d_model,),
                          "W_skip": (d_model, d_model), "activation_function.threshold": (d_tc,)})
        threshold = t.get("activation_function.threshold", t.get("threshold"))
        arch = activation or ("jumprelu" if threshold is not None else "relu")
        if arch not in ("topk", "relu", "jumprelu"):
            raise InterpError(f"{path / 'config.yaml'}: activation {arch!r} is not supported (topk, relu, jumprelu)")
        if arch == "jumprelu" and threshold is None:
            raise InterpError(f"{file} lacks activation_function.threshold, which a jumprelu transcoder needs")
        k = int(config.get("k") or (int(t["k"]) if "k" in t else 0) or 32)
        if arch == "topk" and not config.get("k") and "k" not in t:
            raise InterpError(f"{path / 'config.yaml'}: a topk set needs k")
        cfg = SAEConfig(arch, d_model, d_tc, hook_name=f"blocks.{layer}.{config['feature_input_hook']}",
                        model_name=model_name, k=min(k, d_tc),
                        hook_out=f"blocks.{layer}.{config['feature_output_hook']}", skip="W_skip" in t)
        extra = {"threshold": threshold} if threshold is not None else {}
        if "W_skip" in t:
            extra["W_skip"] = t["W_skip"]
        layers[layer] = _build(cfg, t["W_enc"].T, t["W_dec"], t["b_enc"], t["b_dec"], extra)
    return TranscoderSet(layers, model_name, "circuit-tracer", str(path), config)


# ---------------------------------------------------------------------------------------------- sparsify


def load_sparsify(path: str | Path) -> TranscoderSet:
    """EleutherAI sparsify checkpoints: ``DIR/<hookpoint>/{cfg.json, sae.safetensors}``. MLP hookpoints
    (``layers.{i}.mlp``, as in their SmolLM2-135M skip transcoders) read the MLP's normalised input and
    predict its output; residual hookpoints (``layers.{i}``) are SAEs on ``blocks.{i}.hook_resid_post``."""
    path = Path(path)
    layers, model_name = {}, ""
    for d in sorted(p for p in path.iterdir() if (p / "sae.safetensors").exists()):
        m = re.fullmatch(r"(?:model\.)?(?:layers|h|blocks)\.(\d+)(\.mlp)?", d.name)
        if not m:
            raise InterpError(f"{d}: hookpoint {d.name!r} is not a layer or an MLP (layers.N or layers.N.mlp)")
        layer = int(m.group(1))
        try:
            cfg_raw = json.loads((d / "cfg.json").read_text())
        except FileNotFoundError as err:
            raise InterpError(f"{d} has sae.safetensors but no cfg.json") from err
        except json.JSONDecodeError as err:
            raise InterpError(f"{d / 'cfg.json'} is not JSON: {err.msg}") from err
        t = _read(d / "sae.safetensors")
        for key in ("encoder.weight", "encoder.bias", "W_dec", "b_dec"):
            if key not in t:
                raise InterpError(f"{d / 'sae.safetensors'} lacks {key}")
        d_sae, d_in = t["encoder.weight"].shape if t["encoder.weight"].dim() == 2 else (0, 0)
        _shapes(d / "sae.safetensors", t, {"encoder.weight": (d_sae, d_in), "encoder.bias": (d_sae,),
                                           "W_dec": (d_sae, d_in), "b_dec": (d_in,), "W_skip": (d_in, d_in)})
        if cfg_raw.get("d_in") not in (None, d_in):
            raise InterpError(f"{d / 'cfg.json'}: d_in {cfg_raw.get('d_in')} does not match the weights ({d_in})")
        if str(cfg_raw.get("activation", "topk")) != "topk":
            raise InterpError(f"{d / 'cfg.json'}: activation {cfg_raw.get('activation')!r} is not supported (topk is)")
        mlp = bool(m.group(2)) or bool(cfg_raw.get("transcode"))
        hook = f"blocks.{layer}.mlp.hook_in" if mlp else f"blocks.{layer}.hook_resid_post"
        cfg = SAEConfig("topk", d_in, d_sae, hook_name=hook, k=min(int(cfg_raw.get("k", 32)), d_sae),
                        hook_out=f"blocks.{layer}.hook_mlp_out" if mlp else "", skip=mlp and "W_skip" in t)
        extra = {"W_skip": t["W_skip"]} if cfg.skip else {}
        # a transcoder's encoder reads x itself (ours with b_in = 0); an SAE's reads x − b_dec, as ours does
        layers[layer] = _build(cfg, t["encoder.weight"].T, t["W_dec"], t["encoder.bias"], t["b_dec"], extra)
        model_name = model_name or str(cfg_raw.get("model", ""))
    if not layers:
        raise InterpError(f"{path} holds no sparsify checkpoints")
    return TranscoderSet(layers, model_name, "sparsify", str(path))


# ---------------------------------------------------------------------------------------------- shared


def _read(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except FileNotFoundError as err:
        raise InterpError(f"{file} is missing") from err
    except (SafetensorError, OSError, ValueError) as err:
        raise InterpError(f"{file} is corrupt or not safetensors ({err})") from err


def _shapes(file: Path, t: dict[str, torch.Tensor], want: dict[str, tuple]) -> None:
    if 0 in next(iter(want.values())):
        raise InterpError(f"{file}: {next(iter(want))} is not a matrix")
    for key, shape in want.items():
        if key in t and tuple(t[key].shape) != shape:
            raise InterpError(f"{file}: {key} has shape {tuple(t[key].shape)}, expected {shape}")


def _build(cfg: SAEConfig, W_enc, W_dec, b_enc, b_dec, extra: dict) -> SAE:
    sae = make_sae(replace(cfg, dtype="float32"))
    with torch.no_grad():
        sae.W_enc.copy_(W_enc)
        sae.W_dec.copy_(W_dec)
        sae.b_enc.copy_(b_enc)
        sae.b_dec.copy_(b_dec)
    sae.load_extra_tensors_({k: v.float() for k, v in extra.items()})
    return sae.eval()
