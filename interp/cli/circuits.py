"""``interp attention``, ``heads``, ``lens``, ``patch``, ``path-patch`` and ``circuit``: which
components do the work. ``patch --resample`` and ``circuit --relation`` run the same verbs over
a whole relation (interp.knowledge.fact_recall)."""

from __future__ import annotations

import argparse
from typing import Any

from interp.cli._common import AddParser, count, head, index, ints, layer, model_of, round_floats, with_html
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]

CLI_MAX_PATTERN_VALUES = 12_000_000  # ~100 MB of JSON: every layer and head of a 200-token SmolLM2 prompt
TOP = 5  # rows of a ranked list (strongest attention pairs, patching cells, DLA components)


def add_parsers(add: AddParser) -> None:
    s = add("attention", "attention patterns of a prompt")
    s.add_argument("--prompt", required=True, help="the text whose attention to show")
    s.add_argument("--layer", type=layer, help="one layer (default: all; long prompts need one)")
    s.add_argument("--head", type=head, help="one head of --layer (default: all)")
    s.add_argument("--html", help="write an interactive plotly heatmap here")
    s = add("heads", "score heads as induction / previous-token / duplicate-token heads")
    s.add_argument("--detect", choices=["induction", "previous", "duplicate"], default="induction")
    s.add_argument("--top", type=count, default=10)
    s.add_argument("--n-seqs", type=count, default=8)
    s.add_argument("--seq-len", type=count, default=50)
    s.add_argument("--seed", type=index, default=0)
    s.add_argument("--html", help="write the layer×head heatmaps here")
    s = add("lens", "logit lens, and direct logit attribution with --answer/--wrong")
    s.add_argument("--prompt", required=True, help="the text whose next token to read layer by layer")
    s.add_argument("--answer", help="a token to follow through the layers, e.g. ' Paris'")
    s.add_argument("--wrong", help="with --answer: DLA of logit[answer] - logit[wrong], e.g. ' Rome'")
    s.add_argument("--top", type=count, default=5)
    s.add_argument("--html", help="write the logit-lens curve here")
    def add_pairs(s: argparse.ArgumentParser, required: bool = True) -> None:
        s.add_argument("--clean", required=required, action="append", help="clean prompt (repeat for a batch)")
        s.add_argument("--corrupt", required=required, action="append", help="corrupt prompt, same token length")
        s.add_argument("--answer", required=required, action="append", help="answer token, e.g. ' Paris'")
        s.add_argument("--wrong", required=required, action="append", help="wrong token, e.g. ' Rome'")
        s.add_argument("--metric", choices=["logit_diff", "prob"], default="logit_diff")

    s = add("patch", "activation patching sweep over one site (exact, batched; or attribution); "
                     "or resample ablation averaged over a relation")
    add_pairs(s, required=False)
    s.add_argument("--site", default=None,
                   help="resid_pre (default), attn_out, mlp_out, head_out, head_out_all, q, k, v, q_all, "
                        "k_all, v_all, pattern, pattern_all; with --resample: one of the first three "
                        "(default: all three)")
    s.add_argument("--resample", metavar="NAME|FILE",
                   help="instead of prompt pairs: a relation (shipped name or JSON file); each prompt's source is "
                        "another subject of the same token length, and effects are averaged by token role")
    s.add_argument("--max-pairs", type=count, help="with --resample: at most this many prompts")
    s.add_argument("--seed", type=index, default=0, help="with --resample: seed of the source draw")
    s.add_argument("--method", choices=["exact", "attribution"], default="exact")
    s.add_argument("--direction", choices=["denoise", "noise"], default="denoise")
    s.add_argument("--compare", action="store_true", help="with attribution: also run exact, report agreement")
    s.add_argument("--html", help="write the heatmap here")
    s = add("path-patch", "path patching: every head as the sender, through the path to the logits or to receiver heads")
    add_pairs(s)
    s.add_argument("--receivers", default="logits", help="'logits', or receiver heads as L9H6,L9H9")
    s.add_argument("--receiver-input", choices=["q", "k", "v"], default="q",
                   help="which input of the receiver heads carries the path")
    s.add_argument("--direction", choices=["denoise", "noise"], default="denoise")
    s.add_argument("--freeze-mlps", action="store_true",
                   help="freeze MLPs too, leaving only the direct head-to-head path")
    s.add_argument("--html", help="write the layer x head heatmap here")
    s = add("circuit", "edge attribution patching (EAP): the top edges as a circuit, with faithfulness; "
                       "or a relation's circuit scored on held-out subjects")
    add_pairs(s, required=False)
    s.add_argument("--edges", type=count, default=200, help="keep this many top edges by |score|")
    s.add_argument("--relation", metavar="NAME|FILE",
                   help="instead of prompt pairs: EAP over a relation's training subjects (resampled sources), "
                        "held-out top-1 accuracy for each of --sizes")
    s.add_argument("--sizes", help="comma-separated circuit sizes in edges: the faithfulness curve of prompt pairs, "
                                   "or with --relation the held-out accuracy (default 50,100,200,500,1000,2000,5000)")
    s.add_argument("--seed", type=index, default=0, help="with --relation: seed of the split and the sources")
    s.add_argument("--html", help="write the circuit graph here")


def _task(args):
    """Model and prompt-pair task of the patch/circuit verbs, and their shared output fields."""
    from interp.metrics import make_task

    missing = [f"--{k}" for k in ("clean", "corrupt", "answer", "wrong") if not getattr(args, k)]
    if missing:
        alt = "--resample NAME|FILE" if args.verb == "patch" else "--relation NAME|FILE"
        raise InterpError(f"{args.verb} needs {', '.join(missing)} (prompt pairs), or {alt}")
    _check_pair_lengths(args)
    model = model_of(args)
    task = make_task(model, args.clean, args.corrupt, args.answer, args.wrong)
    fields = {"model": model.cfg.model_name, "metric": args.metric, "n_pairs": task.n_pairs,
              "tokens": task.clean_tokens, "corrupt_tokens": task.corrupt_tokens}
    return model, task, fields



def _check_pair_lengths(args) -> None:
    """Clean and corrupt prompts of different token lengths, refused from the tokenizer before the model
    loads (built-in models; ``make_task`` checks every model again once it has loaded)."""
    from interp.models import canonical_name, prompt_token_ids, prompt_tokenizer

    rows = []
    for kind in ("clean", "corrupt"):
        for text in getattr(args, kind):
            ids = prompt_token_ids(args.model, text) if text.strip() else None
            if ids is None:
                return
            rows.append((kind, ids))
    if len({len(ids) for _, ids in rows}) > 1:
        tok = prompt_tokenizer(canonical_name(args.model))  # the one the ids above came from
        (k1, a), (k2, b) = rows[0], next(r for r in rows if len(r[1]) != len(rows[0][1]))
        raise InterpError(f"{k1} and {k2} prompts tokenize to different lengths: {k1} "
                          f"{[tok.decode([i]) for i in a]} ({len(a)} tokens) vs {k2} {[tok.decode([i]) for i in b]} "
                          f"({len(b)} tokens); patching swaps activations position by position, so every prompt "
                          "needs the same token count")


def cmd_attention(args) -> dict:
    from interp.circuits.attention import attention_patterns

    model = model_of(args)
    res = attention_patterns(model, args.prompt, args.layer, args.head, max_values=CLI_MAX_PATTERN_VALUES)
    out = {"model": model.cfg.model_name, "prompt": args.prompt, "tokens": res.tokens,
           "layers": res.layers, "heads": res.heads, "windows": res.windows,
           "axes": {"pattern": list(res.axes)}, "pattern": round_floats(res.pattern.tolist()),
           "seconds": res.seconds}
    return with_html(out, args, "attention_figure", res, args.layer, args.head)


def cmd_heads(args) -> dict:
    from interp.circuits.attention import detect_heads
    from interp.tokens import str_tokens

    model = model_of(args)
    res = detect_heads(model, n_seqs=args.n_seqs, seq_len=args.seq_len, seed=args.seed)
    out = {"model": model.cfg.model_name, "detector": args.detect,
           "axes": {"scores": list(res.axes)}, "scores": round_floats(res.scores[args.detect].tolist()),
           "top": res.top(args.detect, args.top),
           "loss_first_repeat": res.loss_first_repeat, "loss_second_repeat": res.loss_second_repeat,
           "n_seqs": res.n_seqs, "seq_len": res.seq_len, "seed": args.seed,
           "tokens": str_tokens(model, _first_repeated_row(model, args)),
           "seconds": res.seconds}
    return with_html(out, args, "head_scores_figure", res)


def _first_repeated_row(model, args):
    from interp.circuits.attention import repeated_random_tokens

    return repeated_random_tokens(model, 1, args.seq_len, args.seed)[0]


def cmd_lens(args) -> dict:
    from interp.circuits.lens import direct_logit_attribution, logit_lens
    from interp.tokens import single_token

    model = model_of(args)
    if args.wrong is not None and args.answer is None:
        raise InterpError("--wrong needs --answer: DLA splits logit[answer] - logit[wrong]")
    for text, what in ((args.answer, "answer"), (args.wrong, "wrong answer")):
        if text is not None:
            single_token(model, text, what)  # fail before any work
    if args.answer is not None and args.answer == args.wrong:
        raise InterpError(f"the answer and the wrong token are the same ({args.answer!r}); DLA splits the "
                          "difference of two different tokens")
    if args.answer is not None:
        from interp.metrics import warn_missing_space
        from interp.tokens import to_tokens

        warn_missing_space(model, to_tokens(model, args.prompt), [w for w in (args.answer, args.wrong) if w])
    lens = logit_lens(model, args.prompt, args.answer, top_k=args.top)
    out: dict[str, Any] = {
        "model": model.cfg.model_name, "prompt": args.prompt, "tokens": lens.tokens,
        "layers": lens.layers,
        "axes": {"top_tokens": ["layer", "rank"], "answer_prob": ["layer"],
                 "answer_rank": ["layer"]},
        "top_tokens": [[{"token": t, "prob": p} for t, p in row] for row in lens.top_tokens],
        "answer": args.answer, "answer_prob": lens.answer_prob, "answer_rank": lens.answer_rank,
    }
    seconds = lens.seconds
    if args.wrong is not None:
        dla = direct_logit_attribution(model, args.prompt, args.answer, args.wrong)
        seconds += dla.seconds
        out["axes"] |= {"dla.heads": ["layer", "head"], "dla.mlps": ["layer"]}
        out["dla"] = {"wrong": args.wrong, "logit_diff": dla.logit_diff, "sum_of_parts": dla.total,
                      "embed": dla.embed, "biases": dla.biases, "heads": dla.heads.tolist(),
                      "mlps": dla.mlps.tolist()}
    out["seconds"] = seconds
    return with_html(out, args, "lens_figure", lens)


def cmd_patch(args) -> dict:
    from interp.circuits.patching import get_site, patch_sweep

    if args.resample:
        return _resample_out(args)
    args.site = args.site or "resid_pre"
    get_site(args.site)  # unknown site: fail before loading anything
    model, task, fields = _task(args)
    if args.method == "exact":
        result = patch_sweep(model, task, args.site, args.direction, args.metric)
    else:
        from interp.circuits.attribution import attribution_sweep

        result = attribution_sweep(model, task, [args.site], args.direction, args.metric)[args.site]
    normalized = result.normalized()
    out = {**fields, "site": args.site, "method": args.method, "direction": args.direction,
           "axes": {"values": list(result.axes), "normalized": list(result.axes)},
           "values": round_floats(result.values.tolist()), "normalized": round_floats(normalized.tolist()),
           "clean_baseline": result.clean_baseline, "corrupt_baseline": result.corrupt_baseline,
           "seconds": result.seconds}
    if args.compare and args.method == "attribution":
        from interp.circuits.attribution import agreement

        exact = patch_sweep(model, task, args.site, args.direction, args.metric)
        ag = agreement(exact, result)
        out["agreement"] = {"pearson_r": ag.pearson_r, "top_k": ag.top_k,
                            "top_k_overlap": ag.top_k_overlap, "exact_seconds": exact.seconds}
    return with_html(out, args, "patch_figure", result)


def cmd_path_patch(args) -> dict:
    from interp.circuits.path_patching import path_patch_sweep

    receivers = _receivers(args.receivers)
    model, task, fields = _task(args)
    result = path_patch_sweep(model, task, receivers, args.receiver_input, args.direction, args.metric,
                              args.freeze_mlps)
    out = {**fields, "site": result.site, "method": "path", "direction": args.direction,
           "receivers": args.receivers, "receiver_input": args.receiver_input, "freeze_mlps": args.freeze_mlps,
           "axes": {"values": list(result.axes), "normalized": list(result.axes)},
           "values": round_floats(result.values.tolist()), "normalized": round_floats(result.normalized().tolist()),
           "clean_baseline": result.clean_baseline, "corrupt_baseline": result.corrupt_baseline,
           "seconds": result.seconds}
    return with_html(out, args, "patch_figure", result)


def _receivers(text: str):
    """``logits``, or heads as ``L9H6,L9H9``."""
    if text == "logits":
        return "logits"
    heads = []
    for part in text.split(","):
        layer, _, head = part.strip().upper().removeprefix("L").partition("H")
        if not (layer.isdigit() and head.isdigit()):
            raise InterpError(f"--receivers {text!r}: give 'logits' or heads as L9H6,L9H9 (not {part.strip()!r})")
        heads.append((int(layer), int(head)))
    return heads


def cmd_circuit(args) -> dict:
    from interp.circuits.eap import discover_circuit, edge_attribution, faithfulness_curve

    if args.relation:
        return _relation_circuit_out(args)
    model, task, fields = _task(args)
    sizes = ints(args.sizes, "--sizes")
    scores = edge_attribution(model, task, args.metric)  # one EAP pass for the circuit and its curve
    circuit = discover_circuit(model, task, args.edges, args.metric, scores)
    out = {**fields, "axes": {"edges": ["edge"]}, "nodes": circuit.nodes, "edges": circuit.edges,
           "n_edges": len(circuit.edges), "n_edges_total": circuit.n_edges_total,
           "clean_baseline": circuit.clean_baseline, "corrupt_baseline": circuit.corrupt_baseline,
           "circuit_metric": circuit.circuit_metric, "faithfulness": circuit.faithfulness,
           "seconds": scores.seconds + circuit.seconds}
    if sizes:
        curve = faithfulness_curve(model, task, sizes, args.metric, scores)
        out["curve"] = {"sizes": curve.sizes, "faithfulness": curve.faithfulness}
        out["axes"]["curve.faithfulness"] = ["size"]
        out["seconds"] += curve.seconds
    return with_html(out, args, "circuit_figure", circuit, model.cfg.n_layers)



def _resample_out(args: argparse.Namespace) -> dict:
    """``interp patch --resample NAME|FILE``: resample ablation averaged over a relation."""
    from interp.circuits.patching import get_site
    from interp.knowledge import fact_recall as F
    from interp.knowledge import relations as R

    sites = [args.site] if args.site else list(F.RESAMPLE_SITES)
    for site in sites:
        if get_site(site).axes != ("layer", "pos"):
            raise InterpError(f"--resample sweeps (layer, position) sites: resid_pre, attn_out or mlp_out, "
                              f"not {site}")
    if args.method != "exact":
        raise InterpError("--resample runs exact patching only (leave out --method attribution)")
    relation = R.load_relation(args.resample)
    model = model_of(args)
    res = F.resample_sweep(model, relation, sites, args.seed, args.max_pairs)
    out = {"model": model.cfg.model_name, "relation": res.relation, "direction": "noise (resample)",
           "metric": "logit_diff", "sites": sites, "roles": list(res.roles), "n_pairs": res.n_pairs,
           "n_groups": res.n_groups, "clean_baseline": res.clean_baseline,
           "corrupt_baseline": res.corrupt_baseline,
           "axes": {f"effects.{s}": ["role", "layer"] for s in sites},
           "effects": {s: round_floats(v.tolist()) for s, v in res.effects.items()}, "seconds": res.seconds}
    return with_html(out, args, "resample_figure", res)


def _relation_circuit_out(args: argparse.Namespace) -> dict:
    """``interp circuit --relation NAME|FILE``: EAP over the relation, held-out accuracy by size."""
    from interp.knowledge import fact_recall as F
    from interp.knowledge import relations as R

    sizes = ints(args.sizes, "--sizes") or [50, 100, 200, 500, 1000, 2000, 5000]
    relation = R.load_relation(args.relation)
    model = model_of(args)
    res = F.relation_circuit(model, relation, sizes, args.seed)
    out = {"model": model.cfg.model_name, "relation": res.relation, "metric": "logit_diff",
           "axes": {"accuracy": ["size"], "faithfulness": ["size"]}, "sizes": res.sizes,
           "accuracy": res.accuracy, "faithfulness": round_floats(res.faithfulness),
           "model_accuracy": res.model_accuracy, "ablated_accuracy": res.ablated_accuracy,
           "n_edges_total": res.n_edges_total, "n_train": res.n_train, "n_test": res.n_test,
           "top_edges": res.top_edges, "seconds": res.seconds}
    return with_html(out, args, "relation_circuit_figure", res)





COMMANDS = {"attention": cmd_attention, "heads": cmd_heads, "lens": cmd_lens, "patch": cmd_patch,
            "path-patch": cmd_path_patch, "circuit": cmd_circuit}


def _label(axis: str, i: int, tokens: list[str]) -> str:
    return {"layer": f"L{i}", "head": f"H{i}"}.get(axis, f"{tokens[i]!r}@{i}" if axis == "pos" else f"{axis}{i}")


def _ranked(grid, axes: list[str], tokens: list[str], key=abs, n: int = TOP) -> list[tuple[float, str]]:
    """The ``n`` largest cells of a nested list by ``key``, each with its axis labels."""
    cells = []

    def walk(node, idx):
        if isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, idx + [i])
        elif node is not None and node == node:  # skip cells without a value (null or NaN)
            cells.append((node, " ".join(_label(a, i, tokens) for a, i in zip(axes, idx))))
    walk(grid, [])
    return sorted(cells, key=lambda c: key(c[0]), reverse=True)[:n]



def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The terminal form of a circuits verb's result (without ``--json``)."""
    if verb_name in ("patch", "circuit") and "relation" in out:
        _relation_summary(verb_name, out)
    elif verb_name == "heads":
        print(f"loss first repeat {out['loss_first_repeat']:.2f}, second {out['loss_second_repeat']:.2f} nats")
        for h in out["top"]:
            print(f"{h['name']:<8} {out['detector']} {h['score']:.3f}")
    elif verb_name == "lens":
        for i, layer in enumerate(out["layers"]):
            tops = "  ".join(f"{t['token']!r} {t['prob']:.3f}" for t in out["top_tokens"][i])
            extra = "" if out["answer_prob"] is None else \
                f"  | P(answer)={out['answer_prob'][i]:.3f} rank {out['answer_rank'][i]}"
            print(f"{layer:<6} {tops}{extra}")
        if "dla" in out:
            d = out["dla"]
            print(f"logit diff {d['logit_diff']:.4f} = sum of DLA parts {d['sum_of_parts']:.4f}; largest parts:")
            parts = _ranked(d["heads"], ["layer", "head"], []) + [(v, f"MLP{i}") for i, v in enumerate(d["mlps"])]
            for v, name in sorted(parts, key=lambda c: abs(c[0]), reverse=True)[:TOP]:
                print(f"  {name.replace(' ', ''):<8} {v:+.4f}")
    elif verb_name in ("patch", "path-patch"):
        print(f"{out['method']} {out['site']} ({out['direction']}): clean {out['clean_baseline']:.3f}, "
              f"corrupt {out['corrupt_baseline']:.3f}; strongest normalised cells:")
        grid = out.get("normalized") or out["values"]
        for v, where in _ranked(grid, out["axes"]["values"], out["tokens"]):
            print(f"  {where:<32} {v:+.3f}")
        if "agreement" in out:
            print(f"agreement with exact: r={out['agreement']['pearson_r']:.3f}")
    elif verb_name == "circuit":
        print(f"{out['n_edges']} of {out['n_edges_total']} edges, {len(out['nodes'])} nodes: "
              f"faithfulness {out['faithfulness']:.3f}")
        for e in out["edges"][:10]:
            print(f"  {e['src']:>8} -> {e['dst']:<8} ({e['input']}) {e['score']:+.3f}")
        if "curve" in out:
            print("faithfulness by size: " + ", ".join(
                f"{k} {f:.2f}" for k, f in zip(out["curve"]["sizes"], out["curve"]["faithfulness"])))
    elif verb_name == "attention":
        print(f"tokens {out['tokens']}; patterns for layers {out['layers']} heads {out['heads']}"
              + (f"; figure {out['html']}" if "html" in out else ""))
        pairs = []  # strongest query -> key weights, the first position (the attention sink) left out
        for li, layer in enumerate(out["pattern"]):
            for hi, head in enumerate(layer):
                for q, row in enumerate(head):
                    pairs += [(w, out["layers"][li], out["heads"][hi], q, k) for k, w in enumerate(row) if 0 < k <= q]
        if pairs:
            print("strongest query -> key (first position left out):")
        for w, l, h, q, k in sorted(pairs, reverse=True)[:TOP]:
            print(f"  L{l}H{h}  {out['tokens'][q]!r}@{q} -> {out['tokens'][k]!r}@{k}  {w:.3f}")


def _relation_summary(verb_name: str, out: dict) -> None:
    if verb_name == "patch":  # --resample
        print(f"resample ablation over {out['relation']}: {out['n_pairs']} prompts, logit difference "
              f"{out['clean_baseline']:.2f} clean, {out['corrupt_baseline']:.2f} resampled; peak share lost:")
        for site, grid in out["effects"].items():
            for role, row in zip(out["roles"], grid):
                vals = [(v, l) for l, v in enumerate(row) if v is not None]
                if vals:
                    v, l = max(vals)
                    print(f"  {site:<9} {role:<24} {v:.3f} at L{l}")
    elif verb_name == "circuit":  # --relation
        print(f"circuit for {out['relation']}: held-out accuracy {out['model_accuracy']:.2f} whole model, "
              f"{out['ablated_accuracy']:.2f} with every edge resampled")
        for k, a, f in zip(out["sizes"], out["accuracy"], out["faithfulness"]):
            print(f"  {k:>6} edges: accuracy {a:.3f}, logit difference recovered "
                  f"{'-' if f is None else f'{f:.3f}'}")
