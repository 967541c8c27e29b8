"""Check a verb's arguments against the model's config before any weights load.

``interp.cli.main`` calls :func:`preflight` on every parsed command line before the verb runs.
It needs no knowledge of any verb: it walks the parsed arguments for the values
``interp.cli._common``'s argument types tag (:class:`Layer`, :class:`Head`, :class:`Position`,
:class:`Feature`, :class:`LayerList`, and the :class:`FeatureSpec` of ``--ablate``/``--steer``)
and checks each against

* the model's shape (``interp.models.model_shape``: the built-in table or a ``config.json``,
  never the weights), for layers and heads;
* the token count of the verb's ``--prompt`` (the tokenizer alone), for positions;
* the width of the verb's dictionary (``--transcoders``, ``--sae`` or an SAE directory argument,
  read from its JSON config), for features.

A misspelt ``--model`` is refused here too, with the nearest known name. So a wrong argument costs
a JSON read and perhaps the tokenizer (well under a second), not a model load (a minute or more on
a busy 2-core machine). What needs the model's activations (is a feature active at that
position?) is checked by the verb after its clean forward pass and before any expensive step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from interp.cli._common import Feature, FeatureSpec, Head, Layer, LayerList, Position
from interp.errors import InterpError

__all__ = ["preflight"]

_DICTIONARY_ARGS = ("transcoders", "sae", "dir")
"""Arguments that name the dictionary a verb's features belong to, in order of preference."""


def _tagged(value, flag: str):
    """(flag, value) for every tagged value inside ``value`` (lists, feature specs)."""
    if isinstance(value, (FeatureSpec, Layer, Head, Position, Feature, LayerList)):
        yield flag, value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _tagged(v, flag)


def preflight(args: argparse.Namespace) -> None:
    """Raise :class:`InterpError` with one line for the first argument that cannot fit the model."""
    values = [tv for name, v in vars(args).items() for tv in _tagged(v, "--" + name.replace("_", "-"))]
    if getattr(args, "model", None) is None and not values:
        return
    from interp.models import model_shape

    shape = model_shape(getattr(args, "model", None))  # a name that cannot load is refused here
    if shape is None or not values:
        return
    for flag, v in values:
        if isinstance(v, FeatureSpec):
            _layer(shape.n_layers, v.layer, flag, _spec_text(v))
        elif isinstance(v, Layer):
            _layer(shape.n_layers, v, flag)
        elif isinstance(v, LayerList):
            for layer in v.layers():
                _layer(shape.n_layers, layer, flag, str(v))
        elif isinstance(v, Head):
            if v >= shape.n_heads:
                raise InterpError(f"{flag} {v} is out of range: the model has {shape.n_heads} heads per layer "
                                  f"(0-{shape.n_heads - 1})")
    _check_positions(args, values)
    _check_features(args, values)


def _spec_text(v: FeatureSpec) -> str:
    return f"{v.layer}:{v.feature}" + ("" if v.position is None else f"@{v.position}")


def _layer(n_layers: int, layer: int, flag: str, what: str = "") -> None:
    if layer >= n_layers:
        where = f"{flag} {what}: layer {layer}" if what else f"{flag} {layer}"
        raise InterpError(f"{where} is out of range: the model has {n_layers} layers (0-{n_layers - 1})")


def _check_positions(args: argparse.Namespace, values: list) -> None:
    wanted = [(flag, "", v) if isinstance(v, Position) else (flag, _spec_text(v), v.position) for flag, v in values
              if isinstance(v, Position) or (isinstance(v, FeatureSpec) and v.position is not None)]
    prompts = getattr(args, "prompt", None)
    if not wanted or not prompts:
        return
    from interp.models import prompt_token_ids

    lengths = []
    for text in [prompts] if isinstance(prompts, str) else prompts:
        ids = prompt_token_ids(getattr(args, "model", None), text) if text.strip() else None
        if ids is None:
            return  # an empty prompt is the verb's to refuse; another model's tokenizer is the bridge's
        lengths.append(len(ids))
    n = min(lengths)
    for flag, what, pos in wanted:
        if pos >= n:
            where = f"{flag} {what}: position {pos}" if what else f"{flag} {pos}"
            raise InterpError(f"{where} is past the end of the prompt: it has {n} tokens (positions 0-{n - 1}; "
                              "`interp attention --prompt ...` lists them)")


def _check_features(args: argparse.Namespace, values: list) -> None:
    wanted = [(flag, v) for flag, v in values if isinstance(v, (Feature, FeatureSpec))]
    path = next((getattr(args, a) for a in _DICTIONARY_ARGS if isinstance(getattr(args, a, None), str)), None)
    if not wanted or path is None:
        return
    widths = dictionary_widths(Path(path))
    if not widths:
        return  # another layout: its loader checks the features
    for flag, v in wanted:
        if isinstance(v, FeatureSpec):
            if None in widths:
                continue
            if v.layer not in widths:
                raise InterpError(f"{flag} {_spec_text(v)}: layer {v.layer} has no transcoder in {path} "
                                  f"(it has layers {_ranges(sorted(widths))})")
            width, feat = widths[v.layer], v.feature
        else:
            width, feat = widths.get(None, 0), v
            if not width:
                continue
        if feat >= width:
            raise InterpError(f"{flag} {_spec_text(v) if isinstance(v, FeatureSpec) else v}: feature {feat} is out "
                              f"of range: the dictionary has {width} features (0-{width - 1})")


def dictionary_widths(path: Path) -> dict[int | None, int]:
    """Latents per layer of a transcoder set (``{layer: d_sae}``: our ``set.json``, or circuit-tracer's
    ``layer_{i}.safetensors``), or ``{None: d_sae}`` for one SAE directory, from JSON configs and
    safetensors headers alone; ``{}`` for anything else."""
    import re

    try:
        if (path / "set.json").is_file():
            layers = json.loads((path / "set.json").read_text(encoding="utf-8"))["layers"]
            return {int(k): int(json.loads((path / d / "cfg.json").read_text(encoding="utf-8"))["d_sae"])
                    for k, d in layers.items()}
        if (path / "cfg.json").is_file():
            return {None: int(json.loads((path / "cfg.json").read_text(encoding="utf-8"))["d_sae"])}
        if (path / "config.yaml").is_file():
            files = {int(m[1]): p for p in path.glob("layer_*.safetensors")
                     if (m := re.fullmatch(r"layer_(\d+)\.safetensors", p.name))}
            return {layer: int(_safetensors_header(p)["W_enc"]["shape"][0]) for layer, p in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return {}  # unfinished or malformed: the loader says what is wrong, in its own words
    return {}


def _safetensors_header(path: Path) -> dict:
    """A safetensors file's header (tensor name → dtype, shape, offsets): an 8-byte little-endian length,
    then that much JSON. Read without torch or the tensors themselves."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        if not 0 < n < 100_000_000:
            raise ValueError("not a safetensors file")
        return json.loads(f.read(n))


def _ranges(layers: list[int]) -> str:
    out, start = [], None
    for i, layer in enumerate(layers):
        start = layer if start is None else start
        if i + 1 == len(layers) or layers[i + 1] != layer + 1:
            out.append(str(start) if start == layer else f"{start}-{layer}")
            start = None
    return ",".join(out)
