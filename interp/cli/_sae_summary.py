"""The terminal form of ``interp sae <sub>`` (without ``--json``), apart from the verbs that build it."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

__all__ = ["summary"]


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The terminal form of ``interp sae <sub>`` (without ``--json``)."""
    sub = args.sae_cmd
    if sub == "eval" and "ce_replacement" in out:
        print(f"replacement model ({len(out['layers'])} transcoders, {out['tokens']:,} held-out tokens): CE "
              f"{out['ce_replacement']:.3f} against clean {out['ce_clean']:.3f} and all MLPs zeroed {out['ce_zero']:.3f} "
              f"({out['ce_loss_recovered']:.1%} of the gap recovered); top-1 agreement {out['top1_agreement']:.1%}; "
              f"KL {out['kl']:.3f}")
        for f in out["layers"]:
            print(f"  layer {f['layer']:>2}  FVU {f['fvu']:.3f}  L0 {f['l0']:5.1f}  dead {f['dead_frac']:.3f}  "
                  + ("CE recovered alone skipped (--no-per-layer)" if math.isnan(f["ce_loss_recovered"])
                     else f"CE recovered alone {f['ce_loss_recovered']:.3f}"))
    elif sub == "eval":
        print(f"L0 {out['l0']:.1f}  FVU {out['fvu']:.3f}  CE recovered {out['ce_loss_recovered']:.3f}  "
              f"KL {out['kl_sae']:.4f}  dead {out['dead_frac']:.3f}  dense {out['dense_frac']:.3f}")
    elif sub == "train" and out.get("layers") is not None:
        kind = "transcoders" if out["transcoder"] else "SAEs"
        kind = "layers of one cross-layer transcoder" if out.get("clt") else kind
        fin = out["final"]
        print(f"trained {len(out['layers'])} {kind} for {out['steps']} steps ({out['tokens']:,} tokens, one model pass "
              f"per block) into {out['out']}: mean FVU {fin.get('fvu', 0):.3f}, worst {fin.get('worst_fvu') or 0:.3f} "
              f"(layer {fin['worst_fvu_layer']}), mean L0 {fin.get('l0', 0):.1f}")
        for f in out["per_layer"]:
            print(f"  layer {f['layer']:>2}  L0 {f.get('l0', 0):5.1f}  FVU {f.get('fvu', 0):.3f}  dead {f.get('dead_frac', 0):.3f}")
        _print_memory(out)
    elif sub == "train":
        f = out["final"]
        passes = f", {out['epochs']} passes over the corpus" if out.get("epochs", 1) > 1 else ""
        print(f"trained {out['steps']} steps ({out['tokens']:,} tokens{passes}) into {out['out']}: "
              f"L0 {f.get('l0', 0):.1f}, FVU {f.get('fvu', 0):.3f}, dead {f.get('dead_frac', 0):.3f}")
        _print_memory(out)
    elif sub == "extract":
        corpus = str(out.get("corpus", ""))
        txt = corpus.endswith(".txt") or (Path(corpus).is_dir() and any(Path(corpus).rglob("*.txt")))
        docs = f"{out['documents']:,} document{'s' if out['documents'] != 1 else ''}" + (
            " (blank lines separate documents in .txt)" if txt else "")
        print(f"{out['tokens']:,} tokens in {out['contexts']:,} contexts of {docs}, "
              f"{out['shards']} shards ({out['shards_written']} written now, {out['tokens_per_second']:,.0f} tok/s) "
              f"into {out['out']}; not encoded: {out['skipped_sink']:,} sink, {out['skipped_massive']:,} massive")
    elif sub == "active":
        for t, feats in zip(out.get("token_text", out["tokens"]), out["features"]):
            print(f"{t!r:>16}  " + "  ".join(f"#{f['feature']} {f['value']:.2f}" for f in feats))
    elif sub == "steer":
        print(f"feature {out['feature']} {out['mode']} at {out['value']:.3f} ({out['scale']:g} x max {out['max_activation']:.3f})")
        for p, b, a in zip(out["prompts"], out["before"], out["after"]):
            print(f"  {p!r}\n    before: {b!r}\n    after:  {a!r}")
    elif sub == "explain":
        print(f"feature {out['feature']}: {out['explanation']!r} ({out['explainer']})")
        for kind in ("detection", "fuzzing"):
            s = out[kind]
            if s:
                print(f"  {kind:<9} balanced accuracy {s['balanced_accuracy']:.2f} [{s['low']:.2f}, {s['high']:.2f}]  "
                      f"AUROC {s['auroc']:.2f}  ({s['n_positive']}+{s['n_negative']} contexts, scorer {out['scorer']})")
    elif sub == "top":
        if not out["contexts"]:
            print(f"feature {out['feature']} never fired in {out['store']}: no context to show")
        for c in out["contexts"]:
            text = "".join(f"[{t}]" if i == c["max_position"] else t for i, t in enumerate(c["tokens"]))
            print(f"{c['max_value']:8.3f}  doc {c['document']}+{c['doc_offset']}  {text!r}")
    elif sub == "search":
        print(f"{out['token']!r}: {out['occurrences']:,} occurrences")
        for r in out["features"]:
            print(f"  #{r['feature']:<6} mean {r['mean_value']:.3f}  fires on {r['fire_rate']:.1%}  max {r['max_value']:.3f}")
    elif sub == "dashboard":
        print(f"feature {out['feature']}: fires on {out['frequency']:.4%} of tokens, max {out['max']:.3f}; "
              f"top logits {[t['token'] for t in out['top_logits'][:5]]}"
              + (f"; page {out['html']}" if "html" in out else ""))
        for c in out["top"][:5]:
            print(f"  {c['max_value']:8.3f}  {''.join(c['tokens'])!r}")
    elif sub == "export":
        print(f"{out['features']} features, {out['activations']} activations, {out['explanations']} explanations "
              f"in {out['batches']} batches under {out['out']}")


def _print_memory(out: dict) -> None:
    m = out.get("memory") or {}
    if m.get("peak_gb"):
        print(f"memory: peak {m['peak_gb']:.2f} GB resident against the estimate {m['estimate_gb']:.2f} GB"
              + (" (dictionaries on the GPU, not counted)" if m.get("dictionaries_on") == "gpu" else ""))
