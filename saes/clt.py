"""Cross-layer transcoders (Ameisen et al. 2025, "Circuit Tracing"): one dictionary over every MLP whose
layer-i features read layer i's MLP input and write to the MLP output of layer i and of every later layer.

With JumpReLU features on raw activations,

    f_i = z_i · 1[z_i > θ_i],   z_i = x_i W_enc[i] + b_enc[i]
    ŷ_l = Σ_{i ≤ l} f_i W_dec[i][:, l − i] + b_dec[l] + x_l W_skip[l]ᵀ     (the skip only in affine CLTs)

``W_dec[i]`` is ``[d_sae, n_layers − i, d_model]``: a layer's decoders to itself and every later layer,
so the decoder parameters grow as L²·F·d / 2.

Two file layouts, each read and written here, every layer's file included:

- **Gemma Scope 2's** (``clt/<variant>/params_layer_{i}.safetensors``, one per layer): ``w_enc [d, F]``,
  ``w_dec [F, n_layers, d]`` (the output layers before i unused, written as zeros), ``b_enc [F]``,
  ``b_dec [d]`` (layer i's output bias), ``threshold [F]`` and, in affine CLTs,
  ``affine_skip_connection [d, d]``. circuit-tracer 0.5's loader of this layout reads layers
  0 … L − 2 only (``range(max(paths))``), dropping the last.
- **circuit-tracer's** (``W_enc_{i}.safetensors`` with ``W_enc_{i} [F, d]``, ``b_enc_{i}``, ``b_dec_{i}``,
  ``threshold_{i}``; ``W_dec_{i}.safetensors`` with ``W_dec_{i} [F, L − i, d]``). Its writer keeps no
  skip path; ours adds ``W_skip_{i}`` beside the encoder (its loader ignores the extra key), so an
  affine CLT round-trips.

Every tensor is checked on load (presence, shape, floating dtype, finiteness, θ ≥ 0), and a layer file
missing from 0 … L − 1 is refused, each in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from interp.cache import atomic_path
from interp.errors import InterpError
from saes.gemma_scope import checked_tensor, read_tensors

__all__ = ["CLTLayer", "CrossLayerTranscoder", "load_clt", "save_circuit_tracer_clt", "save_gemma_scope_clt"]


class CrossLayerTranscoder(nn.Module):
    """A JumpReLU CLT over ``n_layers`` MLPs (module docstring). ``hook_in``/``hook_out`` are templates in
    ``{l}``: where layer l's features read and where its reconstruction is compared."""

    def __init__(self, n_layers: int, d_model: int, d_sae: int, skip: bool = False,
                 hook_in: str = "blocks.{l}.ln2.hook_out", hook_out: str = "blocks.{l}.hook_mlp_out",
                 model_name: str = "", architecture: str = "jumprelu", k: int = 0, first_layer: int = 0):
        super().__init__()
        self.n_layers, self.d_model, self.d_sae = n_layers, d_model, d_sae
        self.hook_in, self.hook_out, self.model_name = hook_in, hook_out, model_name
        self.architecture, self.k, self.first_layer = architecture, k, first_layer
        self.train_corpus, self.train_tokens_end = "", 0  # what it trained on, where the trainer records it
        self.W_enc = nn.Parameter(torch.zeros(n_layers, d_model, d_sae))
        self.b_enc = nn.Parameter(torch.zeros(n_layers, d_sae))
        self.log_threshold = nn.Parameter(torch.zeros(n_layers, d_sae))
        self.W_dec = nn.ParameterList([nn.Parameter(torch.zeros(d_sae, n_layers - i, d_model))
                                       for i in range(n_layers)])
        self.b_dec = nn.Parameter(torch.zeros(n_layers, d_model))
        self.W_skip = nn.Parameter(torch.zeros(n_layers, d_model, d_model)) if skip else None

    @property
    def threshold(self) -> Tensor:
        return self.log_threshold.exp()

    def activation(self, layer: int, pre: Tensor) -> Tensor:
        """JumpReLU at layer ``layer``'s thresholds, or (a TopK CLT trained here) the k largest, ReLU'd."""
        if self.architecture == "topk":
            vals, idx = pre.topk(self.k, dim=-1)
            return torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
        return pre * (pre > self.threshold[layer])

    def encode(self, layer: int, x: Tensor) -> Tensor:
        """Layer ``layer``'s (counted from the CLT's first) feature activations on its MLP input ``x``."""
        return self.activation(layer, x.to(self.W_enc.dtype) @ self.W_enc[layer] + self.b_enc[layer])

    def reconstruct(self, xs: dict[int, Tensor]) -> dict[int, Tensor]:
        """Every layer's predicted MLP output from every layer's MLP input (``xs``: layer → [..., d_model])."""
        feats = {i: self.encode(i, xs[i]) for i in range(self.n_layers)}
        out = {}
        for layer in range(self.n_layers):
            y = self.b_dec[layer] + sum(feats[i] @ self.W_dec[i][:, layer - i] for i in range(layer + 1))
            if self.W_skip is not None:
                y = y + torch.nn.functional.linear(xs[layer].to(self.W_skip.dtype), self.W_skip[layer])
            out[layer] = y
        return out


class CLTLayer(nn.Module):
    """Layer ``layer`` of a CLT seen as one per-layer dictionary (what the replacement model and graphs read):
    its encoder, its own-layer decoder (``W_dec``), its output layer's bias and skip. Its decoders into
    later layers are :meth:`saes.transcoder.CLTSet.decoders_into`'s."""

    def __init__(self, clt: CrossLayerTranscoder, layer: int):
        super().__init__()
        self.clt, self.layer = clt, layer
        self.input_scale = self.target_scale = 1.0
        self.cfg = SimpleNamespace(d_sae=clt.d_sae, d_in=clt.d_model, architecture=clt.architecture, k=clt.k,
                                   train_corpus=clt.train_corpus, train_tokens_end=clt.train_tokens_end,
                                   hook_name=clt.hook_in.format(l=clt.first_layer + layer),
                                   hook_out=clt.hook_out.format(l=clt.first_layer + layer))

    @property
    def W_enc(self) -> Tensor:
        return self.clt.W_enc[self.layer]

    @property
    def W_dec(self) -> Tensor:
        return self.clt.W_dec[self.layer][:, 0]

    @property
    def b_dec(self) -> Tensor:
        return self.clt.b_dec[self.layer]

    @property
    def W_skip(self) -> Tensor | None:
        return None if self.clt.W_skip is None else self.clt.W_skip[self.layer]

    @property
    def is_transcoder(self) -> bool:
        return True

    def pre_acts(self, x: Tensor) -> Tensor:
        return x.to(self.clt.W_enc.dtype) @ self.clt.W_enc[self.layer] + self.clt.b_enc[self.layer]

    def activation(self, pre: Tensor) -> Tensor:
        return self.clt.activation(self.layer, pre)

    def encode(self, x: Tensor) -> Tensor:
        return self.activation(self.pre_acts(x))


# ---------------------------------------------------------------------------------------------- files


def _layer_files(path: Path, pattern: str) -> list[Path]:
    """The files ``pattern`` (a regex with one layer group) in ``path``, in layer order, refused unless they
    are layers 0 … L − 1 with none missing."""
    found = {int(m.group(1)): p for p in path.iterdir() if (m := re.fullmatch(pattern, p.name))}
    missing = sorted(set(range(max(found, default=-1) + 1)) - set(found))
    if not found or missing:
        raise InterpError(f"{path} is not a whole CLT: " + (f"layer file {missing[0]} is missing" if found
                                                            else "it has no layer files"))
    return [found[i] for i in range(len(found))]


def load_clt(path: str | Path, device: str = "cpu") -> CrossLayerTranscoder:
    """A CLT in Gemma Scope 2's or circuit-tracer's layout (module docstring), detected from its files."""
    path = Path(path)
    if not path.is_dir():
        raise InterpError(f"{path} is not a CLT folder: {'it does not exist' if not path.exists() else 'a file'}")
    if any(re.fullmatch(r"params_layer_\d+\.safetensors", p.name) for p in path.iterdir()):
        clt = _load_gemma_scope(path)
    elif (path / "W_enc_0.safetensors").exists():
        clt = _load_circuit_tracer(path)
    else:
        raise InterpError(f"{path} is not a CLT folder: no params_layer_0.safetensors (Gemma Scope 2) or "
                          "W_enc_0.safetensors (circuit-tracer)")
    if (clt.threshold < 0).any():
        raise InterpError(f"{path}: a threshold is negative")
    return clt.to(device).eval()


def _load_gemma_scope(path: Path) -> CrossLayerTranscoder:
    files = _layer_files(path, r"params_layer_(\d+)\.safetensors")
    L = len(files)
    raw0 = read_tensors(files[0])
    w_enc = checked_tensor(files[0], raw0, "w_enc")
    if w_enc.dim() != 2:
        raise InterpError(f"{files[0]}: w_enc has shape {tuple(w_enc.shape)}, not [d_model, width]")
    d, F = w_enc.shape
    if "w_dec" in raw0 and raw0["w_dec"].dim() == 3 and raw0["w_dec"].shape[1] != L:
        raise InterpError(f"{path}: its decoders write {raw0['w_dec'].shape[1]} layers, but {L} layer files are "
                          "present (one is missing)")
    skip = "affine_skip_connection" in raw0
    clt = _described(CrossLayerTranscoder(L, d, F, skip), _config(path), "google/gemma-3-270m")
    with torch.no_grad():
        for i, f in enumerate(files):
            raw = raw0 if i == 0 else read_tensors(f)
            clt.W_enc[i] = checked_tensor(f, raw, "w_enc", (d, F))
            clt.b_enc[i] = checked_tensor(f, raw, "b_enc", (F,))
            clt.log_threshold[i] = checked_tensor(f, raw, "threshold", (F,)).double().log().float()
            clt.W_dec[i].copy_(checked_tensor(f, raw, "w_dec", (F, L, d))[:, i:])
            clt.b_dec[i] = checked_tensor(f, raw, "b_dec", (d,))
            if skip:
                clt.W_skip[i] = checked_tensor(f, raw, "affine_skip_connection", (d, d)).T
    return clt


def _load_circuit_tracer(path: Path) -> CrossLayerTranscoder:
    enc = _layer_files(path, r"W_enc_(\d+)\.safetensors")
    dec = _layer_files(path, r"W_dec_(\d+)\.safetensors")
    if len(dec) != len(enc):
        raise InterpError(f"{path}: {len(enc)} encoder files but {len(dec)} decoder files")
    L = len(enc)
    raw0 = read_tensors(enc[0])
    F, d = tuple(raw0["W_enc_0"].shape) if "W_enc_0" in raw0 else (0, 0)
    skip = "W_skip_0" in raw0
    clt = _described(CrossLayerTranscoder(L, d, F, skip), _config(path), "")
    with torch.no_grad():
        for i in range(L):
            raw = raw0 if i == 0 else read_tensors(enc[i])
            clt.W_enc[i] = checked_tensor(enc[i], raw, f"W_enc_{i}", (F, d)).T
            clt.b_enc[i] = checked_tensor(enc[i], raw, f"b_enc_{i}", (F,))
            clt.b_dec[i] = checked_tensor(enc[i], raw, f"b_dec_{i}", (d,))
            clt.log_threshold[i] = checked_tensor(enc[i], raw, f"threshold_{i}", (F,)).double().log().float()
            if skip:
                clt.W_skip[i] = checked_tensor(enc[i], raw, f"W_skip_{i}", (d, d))
            clt.W_dec[i].copy_(checked_tensor(dec[i], read_tensors(dec[i]), f"W_dec_{i}", (F, L - i, d)))
    return clt


def _config(path: Path) -> dict:
    """The folder's ``config.json`` ({} without one), refused in one line if it is not a JSON object."""
    if not (path / "config.json").exists():
        return {}
    try:
        config = json.loads((path / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise InterpError(f"{path / 'config.json'} is not JSON: {err.msg} at line {err.lineno}") from None
    if not isinstance(config, dict):
        raise InterpError(f"{path / 'config.json'} is not a JSON object")
    return config


def _described(clt: CrossLayerTranscoder, config: dict, model_name: str) -> CrossLayerTranscoder:
    """``clt`` with what its ``config.json`` says: the model, the hooks, the first layer and (a TopK CLT
    trained here) the activation."""
    clt.model_name = str(config.get("model_name") or model_name)
    clt.hook_in, clt.hook_out = str(config.get("hook_in", clt.hook_in)), str(config.get("hook_out", clt.hook_out))
    clt.first_layer = int(config.get("first_layer", 0))
    arch = str(config.get("architecture", "jump_relu")).replace("_", "")
    if arch not in ("jumprelu", "topk"):
        raise InterpError(f"config.json names a {config.get('architecture')!r} CLT; JumpReLU and TopK are read")
    clt.architecture, clt.k = arch, int(config.get("k", 0))
    clt.train_corpus, clt.train_tokens_end = str(config.get("train_corpus", "")), int(config.get("train_tokens_end", 0))
    if arch == "topk" and not 0 < clt.k <= clt.d_sae:
        raise InterpError(f"config.json names a TopK CLT with k = {clt.k}, outside 1 … {clt.d_sae}")
    return clt


def _write_config(clt: CrossLayerTranscoder, path: Path) -> None:
    config = {"architecture": "jump_relu" if clt.architecture == "jumprelu" else clt.architecture,
              "n_layers": clt.n_layers, "width": clt.d_sae, "d_model": clt.d_model,
              "affine_connection": clt.W_skip is not None, "model_name": clt.model_name,
              "hook_in": clt.hook_in, "hook_out": clt.hook_out, "first_layer": clt.first_layer,
              "train_corpus": clt.train_corpus, "train_tokens_end": clt.train_tokens_end}
    if clt.architecture == "topk":
        config["k"] = clt.k
    with atomic_path(path / "config.json") as tmp:
        tmp.write_text(json.dumps(config, indent=1) + "\n")


def _write(tensors: dict[str, Tensor], path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file({k: v.detach().float().contiguous().cpu() for k, v in tensors.items()}, str(tmp))


def save_gemma_scope_clt(clt: CrossLayerTranscoder, path: str | Path) -> Path:
    """Gemma Scope 2's layout: one ``params_layer_{i}.safetensors`` per layer (and a ``config.json``)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    L, F, d = clt.n_layers, clt.d_sae, clt.d_model
    for i in range(L):
        w_dec = torch.zeros(F, L, d)
        w_dec[:, i:] = clt.W_dec[i].detach().float().cpu()
        t = {"w_enc": clt.W_enc[i], "w_dec": w_dec, "b_enc": clt.b_enc[i], "b_dec": clt.b_dec[i],
             "threshold": clt.threshold[i]}
        if clt.W_skip is not None:
            t["affine_skip_connection"] = clt.W_skip[i].T
        _write(t, path / f"params_layer_{i}.safetensors")
    _write_config(clt, path)
    return path


def save_circuit_tracer_clt(clt: CrossLayerTranscoder, path: str | Path) -> Path:
    """circuit-tracer's layout (``W_enc_{i}``/``W_dec_{i}`` files), with the skip path as ``W_skip_{i}``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    for i in range(clt.n_layers):
        t = {f"W_enc_{i}": clt.W_enc[i].T, f"b_enc_{i}": clt.b_enc[i], f"b_dec_{i}": clt.b_dec[i],
             f"threshold_{i}": clt.threshold[i]}
        if clt.W_skip is not None:
            t[f"W_skip_{i}"] = clt.W_skip[i]
        _write(t, path / f"W_enc_{i}.safetensors")
        _write({f"W_dec_{i}": clt.W_dec[i]}, path / f"W_dec_{i}.safetensors")
    _write_config(clt, path)
    return path
