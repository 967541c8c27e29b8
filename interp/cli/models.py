"""``interp models``: the embedded, built-in, known and cached models, and the default corpora."""

from __future__ import annotations

import argparse
import time

from interp.cli._common import AddParser

__all__ = ["COMMANDS", "add_parsers", "summary"]


def add_parsers(add: AddParser) -> None:
    s = add("models", "list embedded, built-in, known and cached models, and the shipped corpora (no torch: "
                      "it reads the cache and package metadata only)")
    s.add_argument("--count-corpora", action="store_true",
                   help="count the shipped corpora's tokens now if they are not cached yet (once, 10-20 s); "
                        "the README's set-up does this")


def cmd_models(args) -> dict:
    from interp.cache import cache_dir
    from interp.corpus import describe_corpora
    from interp.models import DEFAULT_MODEL, list_models, load_embedded_tokenizer

    t0 = time.perf_counter()
    rows = list_models()
    corpora = describe_corpora(load_embedded_tokenizer if args.count_corpora else None, DEFAULT_MODEL)
    return {"default": DEFAULT_MODEL, "cache_dir": str(cache_dir()), "models": rows,
            "corpora": corpora, "corpus_tokenizer": DEFAULT_MODEL, "seconds": time.perf_counter() - t0}



COMMANDS = {"models": cmd_models}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """One line per model and per corpus."""
    if verb_name == "models":
        for m in out["models"]:
            print(f"{m['name']:<28} {m['kind']:<12} offline={m['offline']!s:<5} {m['description']}")
            if m.get("size"):
                print(f"{'':<28} {'':<12} {m['size']}; licence: {m['licence']}")
        for c in out["corpora"]:
            if not c["available"]:
                size = "not installed"
            elif not c["counted"]:
                size = "not counted yet (interp models --count-corpora)"
            else:
                size = f"{c['tokens']:>10,} tokens {c['documents']:>6,} docs"
            print(f"corpus {c['name']:<10} {size}  {c['description']} ({c['package']})")
