"""The ``interp`` command: parse arguments, call library functions, print one JSON object.

Every verb prints one JSON object on stdout with ``--json`` (a short summary
otherwise); progress and logs go to stderr. ``seconds`` is the wall time of the
computation alone, without imports or model loading. Bad input exits with status 2
and one line on stderr, and writes nothing.

One module per verb family (models, circuits, knowledge, representations, relation,
weights, gcg, sae, app). Each owns its verbs whole and offers three names:

- ``add_parsers(add)``: adds its sub-parsers through ``add(name, help)``, which gives each
  the shared ``--model --device --device-map --json``;
- ``COMMANDS``: verb name → ``command(args) -> dict``, the verb's JSON object;
- ``summary(verb, args, out)``: prints the plain-text form of ``out``.

A family imports only :mod:`interp.cli._common` (argument types, the one-line-error
parser, the model loader, ``--html``) and the library, never another family. A new
family is one new module here plus its name in ``FAMILIES`` below; ``--help`` lists
the verbs in that order. Family modules import nothing heavy at module level, so
``interp --help`` runs without torch.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from types import ModuleType

from interp.cli._common import root_parser
from interp.errors import InterpError

__all__ = ["FAMILIES", "build_parser", "main"]

FAMILIES = ("models", "circuits", "knowledge", "representations", "relation", "weights", "gcg", "sae", "graph",
            "app")
DESCRIPTION = ("Mechanistic interpretability on one hooked model: every verb prints a summary, "
               "or one JSON object with --json. See README.md and docs/cli.md.")


def _families() -> list[ModuleType]:
    return [importlib.import_module(f"interp.cli.{name}") for name in FAMILIES]


def build_parser(description: str = DESCRIPTION):
    """The whole ``interp`` parser: every family's verbs under one sub-parser."""
    parser, add = root_parser(description)
    for family in _families():
        family.add_parsers(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    family = next(f for f in _families() if args.verb in f.COMMANDS)
    try:
        from interp.cli._preflight import preflight

        preflight(args)  # layers, heads, positions, features and the model's name, before any weights load
        if getattr(args, "html", None):  # a figure nobody can write is refused before the work, not after
            from interp.cache import check_writable

            check_writable(args.html, "--html", directory=False)
        out = family.COMMANDS[args.verb](args)
    except InterpError as err:
        print(f"interp: error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:  # a path the checks could not foresee: still bad input, in one line
        print(f"interp: error: cannot write {err.filename or ''}: permission denied ({err.strerror})", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interp: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a bug, not bad input: still one line unless asked
        if os.environ.get("INTERP_DEBUG"):
            raise
        print(f"interp: internal error: {type(err).__name__}: {err} "
              "(set INTERP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    try:
        if args.json:
            json.dump(out, sys.stdout)
            sys.stdout.write("\n")
        else:
            family.summary(args.verb, args, out)
            print(f"({out['seconds']:.2f} s)")
        sys.stdout.flush()
    except BrokenPipeError:  # `interp ... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
