"""The ``interp`` command: parse arguments, call library functions, print one JSON object.

Every verb prints one JSON object on stdout with ``--json`` (a short summary
otherwise); progress and logs go to stderr. ``seconds`` is the wall time of the
computation alone, without imports or model loading. Bad input exits with status 2
and one line on stderr, and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from interp.cli.gcg import cmd_gcg
from interp.cli._parser import build_parser
from interp.cli.relation import _ints, cmd_relation, relation_circuit_out, resample_out
from interp.cli.weights import cmd_weights
from interp.cli.sae import cmd_sae
from interp.cli._text import print_summary
from interp.errors import InterpError

__all__ = ["main"]

VERBS: dict[str, Callable[[argparse.Namespace], dict]] = {}
CLI_MAX_PATTERN_VALUES = 12_000_000  # ~100 MB of JSON: every layer and head of a 200-token SmolLM2 prompt


def verb(fn: Callable[[argparse.Namespace], dict]):
    VERBS[fn.__name__.removeprefix("cmd_").replace("_", "-")] = fn
    return fn


def _model(args):
    from transformers.utils import logging as hf_logging

    from interp.distributed import local_device
    from interp.models import load_model

    hf_logging.disable_progress_bar()  # transformers' own "Loading weights" bar; our load line stays
    if getattr(args, "device_map", None):  # load_model refuses a --device beside it
        return load_model(args.model, device=args.device, device_map=args.device_map)
    return load_model(args.model, device=local_device(args.device))


def _task(args):
    """Model and prompt-pair task of the patch/circuit verbs, and their shared output fields."""
    from interp.metrics import make_task

    missing = [f"--{k}" for k in ("clean", "corrupt", "answer", "wrong") if not getattr(args, k)]
    if missing:
        alt = "--resample NAME|FILE" if args.verb == "patch" else "--relation NAME|FILE"
        raise InterpError(f"{args.verb} needs {', '.join(missing)} (prompt pairs), or {alt}")

    model = _model(args)
    task = make_task(model, args.clean, args.corrupt, args.answer, args.wrong)
    fields = {"model": model.cfg.model_name, "metric": args.metric, "n_pairs": task.n_pairs,
              "tokens": task.clean_tokens, "corrupt_tokens": task.corrupt_tokens}
    return model, task, fields


@verb
def cmd_models(args) -> dict:
    from interp.cache import cache_dir
    from interp.corpus import describe_corpora
    from interp.models import DEFAULT_MODEL, list_models, load_embedded_tokenizer

    t0 = time.perf_counter()
    rows = list_models()
    corpora = describe_corpora(load_embedded_tokenizer, DEFAULT_MODEL)
    return {"default": DEFAULT_MODEL, "cache_dir": str(cache_dir()), "models": rows,
            "corpora": corpora, "corpus_tokenizer": DEFAULT_MODEL, "seconds": time.perf_counter() - t0}


@verb
def cmd_attention(args) -> dict:
    from interp.circuits.attention import attention_patterns

    model = _model(args)
    res = attention_patterns(model, args.prompt, args.layer, args.head, max_values=CLI_MAX_PATTERN_VALUES)
    out = {"model": model.cfg.model_name, "prompt": args.prompt, "tokens": res.tokens,
           "layers": res.layers, "heads": res.heads,
           "axes": {"pattern": list(res.axes)}, "pattern": _round(res.pattern.tolist()),
           "seconds": res.seconds}
    return _with_html(out, args, "attention_figure", res, args.layer, args.head)


@verb
def cmd_heads(args) -> dict:
    from interp.circuits.attention import detect_heads
    from interp.tokens import str_tokens

    model = _model(args)
    res = detect_heads(model, n_seqs=args.n_seqs, seq_len=args.seq_len, seed=args.seed)
    out = {"model": model.cfg.model_name, "detector": args.detect,
           "axes": {"scores": list(res.axes)}, "scores": _round(res.scores[args.detect].tolist()),
           "top": res.top(args.detect, args.top),
           "loss_first_repeat": res.loss_first_repeat, "loss_second_repeat": res.loss_second_repeat,
           "n_seqs": res.n_seqs, "seq_len": res.seq_len, "seed": args.seed,
           "tokens": str_tokens(model, _first_repeated_row(model, args)),
           "seconds": res.seconds}
    return _with_html(out, args, "head_scores_figure", res)


def _first_repeated_row(model, args):
    from interp.circuits.attention import repeated_random_tokens

    return repeated_random_tokens(model, 1, args.seq_len, args.seed)[0]


@verb
def cmd_lens(args) -> dict:
    from interp.circuits.lens import direct_logit_attribution, logit_lens
    from interp.tokens import single_token

    model = _model(args)
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
    return _with_html(out, args, "lens_figure", lens)


@verb
def cmd_patch(args) -> dict:
    from interp.circuits.patching import get_site, patch_sweep

    if args.resample:
        return resample_out(args, _model, _with_html)
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
           "values": _round(result.values.tolist()), "normalized": _round(normalized.tolist()),
           "clean_baseline": result.clean_baseline, "corrupt_baseline": result.corrupt_baseline,
           "seconds": result.seconds}
    if args.compare and args.method == "attribution":
        from interp.circuits.attribution import agreement

        exact = patch_sweep(model, task, args.site, args.direction, args.metric)
        ag = agreement(exact, result)
        out["agreement"] = {"pearson_r": ag.pearson_r, "top_k": ag.top_k,
                            "top_k_overlap": ag.top_k_overlap, "exact_seconds": exact.seconds}
    return _with_html(out, args, "patch_figure", result)


@verb
def cmd_path_patch(args) -> dict:
    from interp.circuits.path_patching import path_patch_sweep

    receivers = _receivers(args.receivers)
    model, task, fields = _task(args)
    result = path_patch_sweep(model, task, receivers, args.receiver_input, args.direction, args.metric,
                              args.freeze_mlps)
    out = {**fields, "site": result.site, "method": "path", "direction": args.direction,
           "receivers": args.receivers, "receiver_input": args.receiver_input, "freeze_mlps": args.freeze_mlps,
           "axes": {"values": list(result.axes), "normalized": list(result.axes)},
           "values": _round(result.values.tolist()), "normalized": _round(result.normalized().tolist()),
           "clean_baseline": result.clean_baseline, "corrupt_baseline": result.corrupt_baseline,
           "seconds": result.seconds}
    return _with_html(out, args, "patch_figure", result)


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


@verb
def cmd_circuit(args) -> dict:
    from interp.circuits.eap import discover_circuit, edge_attribution, faithfulness_curve

    if args.relation:
        return relation_circuit_out(args, _model, _with_html)
    model, task, fields = _task(args)
    sizes = _ints(args.sizes, "--sizes")
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
    return _with_html(out, args, "circuit_figure", circuit, model.cfg.n_layers)


@verb
def cmd_trace(args) -> dict:
    from interp.knowledge.tracing import KINDS, trace

    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    if args.average:
        return _average_trace(args, kinds)
    if not args.prompt or not args.subject:
        raise InterpError("trace needs --prompt and --subject (or --average over a facts file)")
    model = _model(args)
    result = trace(model, args.prompt, args.subject, args.answer, kinds, args.samples, args.noise,
                   args.window, args.seed)
    out = {"model": model.cfg.model_name, "prompt": args.prompt, "tokens": result.tokens,
           "subject": result.subject, "subject_range": list(result.subject_range),
           "answer": result.answer, "clean_prob": result.clean_prob, "corrupt_prob": result.corrupt_prob,
           "samples": result.samples, "noise_scale": result.noise_scale, "window": result.window,
           "seed": args.seed, "axes": {f"scores.{k}": ["token", "layer"] for k in kinds},
           "scores": {k: _round(v.tolist()) for k, v in result.scores.items()},
           "seconds": result.seconds}
    return _with_html(out, args, "trace_figure", result)


def _average_trace(args, kinds) -> dict:
    from interp.knowledge.tracing import average_trace, load_facts

    facts = load_facts(args.facts)
    if args.limit:
        facts = facts[:args.limit]
    model = _model(args)
    result = average_trace(model, facts, kinds, args.samples, args.noise, args.window, args.seed)
    out = {"model": model.cfg.model_name, "n_facts": result.n_facts, "roles": list(result.roles),
           "mean_clean_prob": result.mean_clean_prob, "mean_corrupt_prob": result.mean_corrupt_prob,
           "samples": args.samples, "window": args.window, "seed": args.seed,
           "axes": {f"effects.{k}": ["role", "layer"] for k in kinds},
           "effects": {k: _round(v.tolist()) for k, v in result.effects.items()},
           "tokens": [], "seconds": result.seconds}
    return _with_html(out, args, "average_trace_figure", result)


@verb
def cmd_edit(args) -> dict:
    from interp.knowledge.rome import RomeConfig

    config = RomeConfig(v_steps=args.steps, cov_tokens=args.cov_tokens, corpus=args.corpus)
    if args.eval:
        return _edit_eval(args, config)
    if not (args.prompt and args.subject and args.target):
        raise InterpError("edit needs --prompt '{} ...', --subject and --target (or --eval FILE)")
    from interp.knowledge.counterfact import edit_report

    model = _model(args)
    report = edit_report(model, args.prompt, args.subject, args.target, args.layer, config, args.generate or [],
                         args.max_new_tokens)
    out = {"model": model.cfg.model_name, **report.to_dict(),
           "axes": {"completions.before": ["prompt"], "completions.after": ["prompt"]}}
    return _with_html(out, args, "edit_figure", out)


def _edit_eval(args, config) -> dict:
    from interp.knowledge.counterfact import evaluate, load_requests

    requests = load_requests(None if args.eval == "default" else args.eval)
    if args.limit:
        requests = requests[:args.limit]
    model = _model(args)
    result = evaluate(model, requests, args.layer, config, fluency=not args.no_fluency)
    out = {"model": model.cfg.model_name, "n_requests": len(requests), "file": args.eval,
           "axes": {"requests": ["request"]}, "tokens": [], **result.to_dict()}
    return _with_html(out, args, "edit_eval_figure", out)


@verb
def cmd_probe(args) -> dict:
    from interp.representations.probes import SHIPPED, collect_activations, load_dataset, probe_layers

    names = list(SHIPPED) if args.dataset == ["all"] else args.dataset
    datasets = [load_dataset(n) for n in names]  # every file checked before any work
    model = _model(args)
    layers = _layers(args.layers, model.cfg.n_layers)
    t0 = time.perf_counter()
    results = {}
    sae = _probe_sae(args, model)
    for ds in datasets:
        acts = collect_activations(model, ds, layers, args.site)
        report = probe_layers(acts, args.folds, args.test_size, args.seed)
        results[ds.name] = report.to_dict()
        if sae is not None:
            results[ds.name]["sae_features"] = _sae_cosines(report, sae)
    out = {"model": model.cfg.model_name, "site": args.site, "layers": layers if layers else
           list(range(model.cfg.n_layers)), "axes": {"results.*.accuracy": ["layer"]}, "tokens": [],
           "results": results, "best_layer": {k: v["best_layer"] for k, v in results.items()},
           "seconds": time.perf_counter() - t0}
    return _with_html(out, args, "probe_figure", list(results.values()))


def _probe_sae(args, model):
    if not args.sae:
        return None
    from saes.io import load_sae, resolve_hook

    sae = load_sae(args.sae)
    resolve_hook(model, sae, args.force)
    return sae


def _sae_cosines(report, sae) -> dict:
    """The SAE features closest to the probe direction at the SAE's own layer (if probed)."""
    from interp.representations.probes import feature_cosines

    parts = sae.cfg.hook_name.split(".")
    layer = int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None
    probe = next((p for p in report.layers if p.layer == layer), report.best)
    return {"layer": probe.layer, "hook": sae.cfg.hook_name,
            "top": {label: feature_cosines(probe.direction[i], sae.W_dec.detach().cpu())
                    for i, label in enumerate(report.labels if probe.direction.shape[0] > 1 else report.labels[1:])}}


def _layers(text: str | None, n: int) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise InterpError(f"--layers takes comma-separated integers such as 0,5,10, not {text!r}") from err


@verb
def cmd_steer(args) -> dict:
    from interp.representations.probes import collect_activations, load_dataset
    from interp.representations.steering import mean_difference, probe_direction, probe_scorer, steering_curve

    ds = load_dataset(args.dataset)
    positive = args.positive or ds.labels[-1]
    if positive not in ds.labels:
        raise InterpError(f"--positive {positive!r} is not one of the dataset's labels {ds.labels}")
    try:
        alphas = [float(a) for a in args.alphas.split(",")]
    except ValueError as err:
        raise InterpError(f"--alphas takes comma-separated numbers, not {args.alphas!r}") from err
    model = _model(args)
    layer = args.layer if args.layer is not None else model.cfg.n_layers // 3
    t0 = time.perf_counter()
    acts = collect_activations(model, ds, [layer])
    vector = (mean_difference if args.method == "mean" else probe_direction)(acts, layer, positive)
    scorer = probe_scorer(model, load_dataset(args.scorer_dataset or args.dataset), args.scorer_layer or layer,
                          positive)
    prompts = args.prompt or ["I went to see the movie and", "The food at the new place", "My week has been",
                              "The hotel room was", "Reading this book made me"]
    curve = steering_curve(model, vector, layer, alphas, prompts, scorer, args.max_new_tokens, args.seed)
    out = {"model": model.cfg.model_name, "dataset": ds.name, "positive": positive, "method": args.method,
           "layer": layer, "vector_norm": float(vector.norm()), "alphas": curve.alphas,
           "mean_score": curve.mean_score, "scores": curve.scores, "prompts": curve.prompts,
           "generations": curve.generations, "axes": {"scores": ["alpha", "prompt"],
                                                      "generations": ["alpha", "prompt"]},
           "tokens": [], "seconds": time.perf_counter() - t0}
    return _with_html(out, args, "steering_figure", curve)


VERBS["sae"] = cmd_sae
VERBS["relation"] = lambda args: cmd_relation(args, _model, _with_html)
VERBS["weights"] = lambda args: cmd_weights(args, _model, _with_html, _round)
VERBS["gcg"] = lambda args: cmd_gcg(args, _model)


@verb
def cmd_app(args) -> dict:
    script = Path(__file__).resolve().parent.parent.parent / "apps" / "_serve.py"
    if not script.is_file():
        raise InterpError(f"the explorer is not next to this install ({script} missing); "
                          "run from a source checkout (pip install -e .)")
    from interp.models import DEFAULT_MODEL

    # The server script starts loading the model at once, while Streamlit starts and the browser
    # connects (about 9 s of imports and set-up on a 2-core CPU), then runs `streamlit run`.
    model = args.model or os.environ.get("INTERP_MODEL") or DEFAULT_MODEL
    cmd = [sys.executable, str(script), model, "--server.address", "127.0.0.1",
           "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    env = dict(os.environ, INTERP_MODEL=model)  # the model the pages start from is the one loading
    print(f"interp: explorer on http://127.0.0.1:{args.port}", file=sys.stderr)
    sys.stderr.flush()
    # Become the Streamlit server (no child left behind when this process is stopped).
    os.execve(sys.executable, cmd, env)


def _round(x, nd: int = 5):
    """Floats rounded for JSON; NaN (a cell with no value, e.g. no path) becomes null, which every
    JSON parser reads."""
    if isinstance(x, list):
        return [_round(v, nd) for v in x]
    if isinstance(x, float):
        return round(x, nd) if x == x else None
    return x


def _with_html(out: dict, args, figure: str, *fig_args) -> dict:
    """With ``--html``, draw ``interp.figures.<figure>(*fig_args)`` there and say so in ``out``."""
    if args.html:
        from interp import figures
        from interp.cache import atomic_path

        with atomic_path(args.html) as tmp:
            getattr(figures, figure)(*fig_args).write_html(tmp, include_plotlyjs=True)  # offline: no CDN
        out["html"] = args.html
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser("Mechanistic interpretability on one hooked model: every verb prints a summary, "
                        "or one JSON object with --json. See README.md and docs/cli.md.").parse_args(argv)
    try:
        out = VERBS[args.verb](args)
    except InterpError as err:
        print(f"interp: error: {err}", file=sys.stderr)
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
    if args.json:
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
    else:
        print_summary(args.verb if args.verb != "sae" else f"sae {args.sae_cmd}", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
