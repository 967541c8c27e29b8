"""``interp weights``: circuits read from the weights alone (no forward pass)."""

from __future__ import annotations

import argparse
import time

from interp.cli._common import AddParser, count, head, layer, model_of, round_floats, with_html
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]

DEFAULT_TOKENS = " the, of, and, to, in, is, was, for, on, that, he, she, it, they, one, two, three, Paris, London, Mary, John"


def _offset(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer offset, got {text!r}") from None


def add_parsers(add: AddParser) -> None:
    s = add("weights", "read circuits from the weights: QK/OV, copying, composition and mimetic statistics")
    s.add_argument("--stat", required=True, choices=["qk", "ov", "copying", "composition", "mimetic"],
                   help="qk/ov: one head's circuit (--layer, --head); copying: every head's OV copying score; "
                        "composition: Q/K/V-composition of every head pair; mimetic: identity-likeness against depth")
    s.add_argument("--layer", type=layer, help="with qk/ov: the layer")
    s.add_argument("--head", type=head, help="with qk/ov: the (query) head")
    s.add_argument("--fold", action="store_true", help="fold the norms' gains into the weights")
    s.add_argument("--offset", type=_offset, default=None,
                   help="rotary models: QK at this key − query offset (−1: the previous token); default none")
    s.add_argument("--tokens", default=DEFAULT_TOKENS,
                   help="with qk/ov: comma-separated words whose full circuit to show (each must be one token)")
    s.add_argument("--top", type=count, default=10, help="with composition/copying: how many top entries to list")
    s.add_argument("--html", help="write the figure here")


def cmd_weights(args: argparse.Namespace) -> dict:
    from interp.architectures import architecture
    from interp.circuits import weights as W

    if args.stat in ("qk", "ov") and (args.layer is None or args.head is None):
        raise InterpError(f"--stat {args.stat} shows one head: give --layer and --head")
    model = model_of(args)
    t0 = time.perf_counter()
    hw = W.head_weights(model, fold=args.fold)
    out = {"model": model.cfg.model_name, "stat": args.stat, "folded": args.fold, "offset": args.offset,
           "rotary": hw.rotary, "rope_base": hw.rope_base, "qk_norm": architecture(model).qk_norm,
           "kv_heads": model.cfg.n_key_value_heads or model.cfg.n_heads}
    if args.stat in ("qk", "ov"):
        from interp.tokens import single_token

        layer, head = W.check_head(hw, args.layer, args.head)
        words = [w for w in args.tokens.split(",") if w.strip()]
        ids = [single_token(model, w, "token") for w in words]
        m = hw.qk(layer, head, args.offset) if args.stat == "qk" else hw.ov(layer, head)
        cos, z = W.identity_stats(m.A, m.B)
        full = W.full_circuit(hw, args.stat, layer, head, ids, args.offset)
        rows, cols = ("query", "key") if args.stat == "qk" else ("source", "output")
        out.update({"layer": layer, "head": head, "singular_values": round_floats(m.S.tolist()),
                    "frobenius": m.norm().item(), "cos_identity": cos, "diag_z": z, "tokens": words,
                    "axes": {"full": [rows, cols]}, "full": round_floats(full.tolist())})
        out["seconds"] = time.perf_counter() - t0
        return with_html(out, args, "full_circuit_figure", full, words, f"Full {args.stat.upper()} circuit of "
                         f"L{layer}H{head}" + ("" if args.offset is None else f" at offset {args.offset}"), rows, cols)
    if args.stat == "copying":
        scores = W.copying_scores(hw)
        flat = scores.flatten()
        top = flat.topk(min(args.top, len(flat))).indices.tolist()
        out.update({"axes": {"copying": ["layer", "head"]}, "copying": round_floats(scores.tolist()),
                    "top": [{"head": f"L{i // hw.n_heads}H{i % hw.n_heads}", "copying": flat[i].item()} for i in top],
                    "seconds": time.perf_counter() - t0})
        return with_html(out, args, "copying_figure", scores)
    if args.stat == "composition":
        comp = W.composition_scores(hw)
        out.update({"heads": comp.heads, "axes": {f"scores.{k}": ["writer", "reader"] for k in comp.scores},
                    "scores": {k: round_floats(v.tolist()) for k, v in comp.scores.items()},
                    "baseline": {k: {"mean": m, "std": s} for k, (m, s) in comp.baseline.items()},
                    "top": {k: comp.top(k, args.top) for k in comp.scores}, "seconds": time.perf_counter() - t0})
        return with_html(out, args, "composition_figure", comp)
    mim = W.mimetic_stats(hw, args.offset)
    out.update({"axes": {**{f"head.{k}": ["layer", "head"] for k in mim.head},
                         **{f"layer.{k}": ["layer"] for k in mim.layer}},
                "head": {k: round_floats(v.tolist()) for k, v in mim.head.items()},
                "layer": {k: round_floats(v.tolist()) for k, v in mim.layer.items()}, "seconds": time.perf_counter() - t0})
    return with_html(out, args, "mimetic_figure", mim)


COMMANDS = {"weights": cmd_weights}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The head's circuit, the top copying heads or head pairs, or the mimetic statistics by layer."""
    stat = out["stat"]
    if out.get("qk_norm") and stat in ("qk", "composition", "mimetic"):
        print("note: this model RMS-normalises each head's queries and keys (QK-norm) before the scores; "
              "W_Q W_Kᵀ leaves those per-head norms out, so QK figures are up to their gains and scales")
    if out.get("kv_heads") and out["kv_heads"] == 1 and stat in ("qk", "ov"):
        print("note: one KV head serves every query head: W_K and W_V are shared across heads")
    if stat in ("qk", "ov"):
        print(f"L{out['layer']}H{out['head']} {stat.upper()}: ‖M‖_F {out['frobenius']:.3f}, cos(M, I) "
              f"{out['cos_identity']:+.3f}, diagonal z {out['diag_z']:+.2f}; top singular values "
              + ", ".join(f"{v:.2f}" for v in out["singular_values"][:5]))
    elif stat == "copying":
        for t in out["top"]:
            print(f"  {t['head']:<8} copying {t['copying']:+.3f}")
    elif stat == "composition":
        for k, rows in out["top"].items():
            b = out["baseline"][k]
            print(f"{k.upper()}-composition (random {b['mean']:.3f} ± {b['std']:.3f}):")
            for r in rows[:5]:
                print(f"  {r['writer']:>7} → {r['reader']:<7} {r['score']:.3f} (z {r['z']:+.1f})")
    else:
        for l, (qc, oc) in enumerate(zip(out["layer"]["qk_cos"], out["layer"]["ov_cos"])):
            print(f"  L{l:<3} QK cos(M, I) {qc:+.3f}   OV cos(M, I) {oc:+.3f}")
