"""What every verb family of the ``interp`` command shares, and nothing that knows a family.

Sizes and counts are checked while parsing, before a model loads: ``count`` (at least 1) and
``index`` (at least 0; layers and heads are never negative, so ``--layer -1`` is refused
rather than silently meaning the last layer). Arguments that name a part of the model are typed
by what they name (``layer``, ``head``, ``position``, ``feature``, ``layer_list`` and the
``ablation``/``steering`` feature specs): ``interp.cli._preflight`` finds every such value in a
verb's arguments and checks it against the model's config, and a feature against its dictionary's
width, before any weights load. A new verb that types its flags this way is checked for free. A bad argument is one ``interp: error:`` line
and exit status 2, like every other bad input. ``model_of`` loads the model a verb names,
``with_html`` draws a result's figure for ``--html``, and ``round_floats`` makes JSON of floats.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from typing import Callable, NamedTuple

from interp.errors import InterpError

AddParser = Callable[[str, str], argparse.ArgumentParser]
"""``add(name, help)``: a verb's sub-parser, already holding ``--model --device --device-map --json``."""



def count(text: str) -> int:
    """An integer of at least 1 (tokens, steps, samples, top-N ...)."""
    n = _int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def index(text: str) -> int:
    """An integer of at least 0 (a layer, a head, a seed): negative indices are refused."""
    n = _int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {n} (negative indices are not supported; "
                                         "`interp models` lists each model's layer count)")
    return n


class Layer(int):
    """A layer index from the command line (checked against the model's layer count before it loads)."""


class Head(int):
    """A head index (checked against the model's head count)."""


class Position(int):
    """A token position of the verb's ``--prompt`` (checked against its token count)."""


class Feature(int):
    """A feature of the verb's dictionary (checked against its width)."""


class LayerList(str):
    """A ``--layers`` value (``0-29``, ``3,5,7``, ``0-3,8`` or ``all``), kept as text for the verb to expand;
    every layer it names is checked against the model's layer count."""

    def layers(self) -> list[int]:
        """The layers named, in order; ``all`` names none (it cannot be out of range)."""
        from interp.architectures import expand_layers

        return expand_layers(self)


class FeatureSpec(NamedTuple):
    """``L:F[@pos]`` (ablate) or ``L:F[@pos]=value`` (steer): a feature of a transcoder set, at one
    position or (``position`` None) wherever it is active."""

    layer: Layer
    feature: Feature
    position: Position | None
    value: float


def layer(text: str) -> Layer:
    return Layer(index(text))


def head(text: str) -> Head:
    return Head(index(text))


def position(text: str) -> Position:
    return Position(index(text))


def feature(text: str) -> Feature:
    return Feature(index(text))


def positions(text: str) -> list[Position]:
    """Comma-separated token positions (``0,3``)."""
    try:
        out = [Position(int(p)) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"give comma-separated token positions such as 0,3, not {text!r}") from None
    if not out or min(out) < 0:
        raise argparse.ArgumentTypeError(f"give token positions of 0 or more, not {text!r}")
    return out


def layer_list(text: str) -> LayerList:
    value = LayerList(text.strip())
    try:
        value.layers()
    except InterpError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("--layers ")) from None
    return value


def fraction(text: str) -> float:
    """A share in (0, 1] (a pruning threshold)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], not {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {text} (a share of the influence)")
    return value


_SPEC = r"\s*(\d+)\s*:\s*(\d+)\s*(?:@\s*(\d+))?\s*"


def ablation(text: str) -> FeatureSpec:
    """``L:F[@pos]``: a feature to set to zero."""
    m = re.fullmatch(_SPEC, text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a feature: use L:F[@pos], e.g. 12:345@6")
    return FeatureSpec(Layer(m[1]), Feature(m[2]), None if m[3] is None else Position(m[3]), 0.0)


def steering(text: str) -> FeatureSpec:
    """``L:F[@pos]=value``: a feature to set to a value."""
    m = re.fullmatch(_SPEC + r"=\s*([-+0-9.eE]+|inf|nan)\s*", text)
    try:
        value = float(m[4]) if m else None
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a feature: use L:F[@pos]=value, e.g. 12:345=8.0")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: the value must be finite")
    return FeatureSpec(Layer(m[1]), Feature(m[2]), None if m[3] is None else Position(m[3]), value)


def refuse_unused(args: argparse.Namespace, defaults: dict, uses: set[str], mode: str) -> None:
    """Refuse, in one line, every flag given that ``mode`` would ignore: those outside ``uses`` whose value
    differs from the parser's default (``--model``, ``--device`` and ``--device-map`` included)."""
    known = {**defaults, "model": None, "device": None, "device_map": None}
    given = [k for k, v in vars(args).items() if k not in uses and k in known and v != known[k]]
    if given:
        flags = " and ".join(", ".join(f"--{k.replace('_', '-')}" for k in given).rsplit(", ", 1))
        raise InterpError(f"{flags} {'does' if len(given) == 1 else 'do'} nothing with {mode.split()[0]}: "
                          f"{mode}; drop {'it' if len(given) == 1 else 'them'}")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``interp: error: <verb> --flag: message`` and exit 2."""

    def add_argument(self, *args, **kwargs):
        if args and str(args[0]).startswith("-") and not kwargs.get("help") and kwargs.get("default") is not None:
            kwargs["help"] = "(default: %(default)s)"  # argparse shows no default for a flag without help
        return super().add_argument(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        # argparse reports leftovers from the top parser ("interp: unrecognized arguments"); name the verb
        ns, extras = self.parse_known_args(args, namespace)
        if extras:
            where = " ".join(v for v in (getattr(ns, "verb", None), getattr(ns, "sae_cmd", None)) if v)
            hint = f"interp {where} --help" if where else "interp --help"
            self._fail(where, f"unrecognized arguments: {' '.join(extras)} (see {hint})")
        return ns

    def error(self, message: str):
        self._fail(self.prog.removeprefix("interp").strip(), message)

    @staticmethod
    def _fail(where: str, message: str):
        sys.stderr.write(f"interp: error: {where + ': ' if where else ''}{message}\n")
        sys.exit(2)


class Help(argparse.RawDescriptionHelpFormatter):
    """Show each flag's default where it has one and the help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def ints(text: str | None, what: str) -> list[int]:
    """Comma-separated integers of at least 0 (``--layers 0,5,10``, ``--sizes 50,100``); ``[]`` for none."""
    if not text:
        return []
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InterpError(f"{what} {text!r}: give comma-separated integers, e.g. 4,8") from None
    if any(v < 0 for v in values):
        raise InterpError(f"{what} {text!r}: values must be 0 or more")
    return values


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version("interp-workbench")
    except PackageNotFoundError:
        return "source checkout"


def root_parser(description: str) -> tuple[argparse.ArgumentParser, AddParser]:
    """The ``interp`` parser and the ``add`` through which each family adds its verbs."""
    p = Parser(prog="interp", description=description, formatter_class=Help)
    p.add_argument("--version", action="version", version=f"interp {version()}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_, formatter_class=Help)
        s.add_argument("--model", default=None, help="model name or directory (default: smollm2-135m)")
        s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
        s.add_argument("--device-map", choices=["auto"], default=None,
                       help="split a model too large for one GPU over every GPU, then the CPU (instead of --device)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        return s

    return p, add


def quiet_transformers() -> None:
    """Turn off transformers' own "Loading weights" bar; the workbench's one load line stays."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def model_of(args: argparse.Namespace):
    """The model a verb's ``--model`` names, on this rank's device (``--device-map`` splits it instead)."""
    from interp.distributed import local_device
    from interp.models import load_model

    quiet_transformers()
    if getattr(args, "device_map", None):  # load_model refuses a --device beside it
        return load_model(args.model, device=args.device, device_map=args.device_map)
    return load_model(args.model, device=local_device(args.device))


def round_floats(x, nd: int = 5):
    """Floats rounded for JSON; NaN (a cell with no value, e.g. no path) becomes null, which every
    JSON parser reads."""
    if isinstance(x, list):
        return [round_floats(v, nd) for v in x]
    if isinstance(x, float):
        return round(x, nd) if x == x else None
    return x


def with_html(out: dict, args: argparse.Namespace, figure: str, *fig_args) -> dict:
    """With ``--html``, draw ``interp.figures.<figure>(*fig_args)`` there and say so in ``out``."""
    if args.html:
        from interp import figures
        from interp.cache import atomic_path

        with atomic_path(args.html) as tmp:
            getattr(figures, figure)(*fig_args).write_html(tmp, include_plotlyjs=True)  # offline: no CDN
        out["html"] = args.html
    return out
