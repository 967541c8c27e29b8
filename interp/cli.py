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

from interp.errors import InterpError

VERBS: dict[str, Callable[[argparse.Namespace], dict]] = {}


def verb(fn: Callable[[argparse.Namespace], dict]):
    VERBS[fn.__name__.removeprefix("cmd_")] = fn
    return fn


def _model(args):
    from interp.models import load_model

    return load_model(args.model, device=args.device)


def _task(args):
    """Model and prompt-pair task of the patch/circuit verbs, and their shared output fields."""
    from interp.metrics import make_task

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
    corpora = describe_corpora(load_embedded_tokenizer(), DEFAULT_MODEL)
    return {"default": DEFAULT_MODEL, "cache_dir": str(cache_dir()), "models": rows,
            "corpora": corpora, "corpus_tokenizer": DEFAULT_MODEL, "seconds": time.perf_counter() - t0}


@verb
def cmd_attention(args) -> dict:
    from interp.attention import attention_patterns

    model = _model(args)
    res = attention_patterns(model, args.prompt, args.layer, args.head)
    out = {"model": model.cfg.model_name, "prompt": args.prompt, "tokens": res.tokens,
           "layers": res.layers, "heads": res.heads,
           "axes": {"pattern": list(res.axes)}, "pattern": _round(res.pattern.tolist()),
           "seconds": res.seconds}
    return _with_html(out, args, "attention_figure", res, args.layer, args.head)


@verb
def cmd_heads(args) -> dict:
    from interp.attention import detect_heads
    from interp.tokens import str_tokens

    model = _model(args)
    res = detect_heads(model, n_seqs=args.n_seqs, seq_len=args.seq_len, seed=args.seed)
    out = {"model": model.cfg.model_name, "detector": args.detect,
           "axes": {"scores": list(res.axes)}, "scores": _round(res.scores[args.detect].tolist()),
           "top": res.top(args.detect, args.top),
           "loss_first_repeat": res.loss_first, "loss_second_repeat": res.loss_second,
           "n_seqs": res.n_seqs, "seq_len": res.seq_len, "seed": args.seed,
           "tokens": str_tokens(model, _first_repeated_row(model, args)),
           "seconds": res.seconds}
    return _with_html(out, args, "head_scores_figure", res)


def _first_repeated_row(model, args):
    from interp.attention import repeated_random_tokens

    return repeated_random_tokens(model, 1, args.seq_len, args.seed)[0]


@verb
def cmd_lens(args) -> dict:
    from interp.lens import direct_logit_attribution, logit_lens
    from interp.tokens import single_token

    model = _model(args)
    if args.wrong is not None and args.answer is None:
        raise InterpError("--wrong needs --answer: DLA splits logit[answer] - logit[wrong]")
    for text, what in ((args.answer, "answer"), (args.wrong, "wrong answer")):
        if text is not None:
            single_token(model, text, what)  # fail before any work
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
    from interp.patching import get_site, patch_sweep

    get_site(args.site)  # unknown site: fail before loading anything
    model, task, fields = _task(args)
    if args.method == "exact":
        result = patch_sweep(model, task, args.site, args.direction, args.metric)
    else:
        from interp.attribution import attribution_sweep

        result = attribution_sweep(model, task, [args.site], args.direction, args.metric)[args.site]
    normalized = result.normalized()
    out = {**fields, "site": args.site, "method": args.method, "direction": args.direction,
           "axes": {"values": list(result.axes), "normalized": list(result.axes)},
           "values": _round(result.values.tolist()), "normalized": _round(normalized.tolist()),
           "clean_baseline": result.clean_baseline, "corrupt_baseline": result.corrupt_baseline,
           "seconds": result.seconds}
    if args.compare and args.method == "attribution":
        from interp.attribution import agreement

        exact = patch_sweep(model, task, args.site, args.direction, args.metric)
        ag = agreement(exact, result)
        out["agreement"] = {"pearson_r": ag.pearson_r, "top_k": ag.top_k,
                            "top_k_overlap": ag.top_k_overlap, "exact_seconds": exact.seconds}
    return _with_html(out, args, "patch_figure", result)


@verb
def cmd_circuit(args) -> dict:
    from interp.circuits import discover_circuit

    model, task, fields = _task(args)
    circuit = discover_circuit(model, task, args.edges, args.metric)
    out = {**fields, "axes": {"edges": ["edge"]}, "nodes": circuit.nodes, "edges": circuit.edges,
           "n_edges": len(circuit.edges), "n_edges_total": circuit.n_edges_total,
           "clean_baseline": circuit.clean_baseline, "corrupt_baseline": circuit.corrupt_baseline,
           "circuit_metric": circuit.circuit_metric, "faithfulness": circuit.faithfulness,
           "seconds": circuit.seconds}
    return _with_html(out, args, "circuit_figure", circuit, model.cfg.n_layers)


@verb
def cmd_trace(args) -> dict:
    from interp.tracing import KINDS, trace

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
    from interp.tracing import average_trace, load_facts

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
    from interp.rome import RomeConfig

    config = RomeConfig(v_steps=args.steps, cov_tokens=args.cov_tokens, corpus=args.corpus)
    if args.eval:
        return _edit_eval(args, config)
    if not (args.prompt and args.subject and args.target):
        raise InterpError("edit needs --prompt '{} ...', --subject and --target (or --eval FILE)")
    from interp.counterfact import target_probs
    from interp.rome import check_request, edit, generate
    from interp.tokens import str_tokens, to_tokens

    model = _model(args)
    text, _ = check_request(model, args.prompt, args.subject, args.target)  # fail before loading statistics
    prompts = [text, f"{args.subject} is", *(args.generate or [])]
    t0 = time.perf_counter()
    answer = model.tokenizer.decode(model(to_tokens(model, text))[0, -1].argmax())
    before = generate(model, prompts, args.max_new_tokens)
    p_before = target_probs(model, [text], [args.target, answer])[0].tolist()
    e = edit(model, args.prompt, args.subject, args.target, args.layer, config)
    after = generate(model, prompts, args.max_new_tokens)
    p_after = target_probs(model, [text], [args.target, answer])[0].tolist()
    out = {"model": model.cfg.model_name, "prompt": args.prompt, "subject": args.subject,
           "target": args.target, "previous_answer": answer, "layer": e.layer,
           "tokens": str_tokens(model, to_tokens(model, text)[0]),
           "axes": {"completions.before": ["prompt"], "completions.after": ["prompt"]},
           "completion_prompts": prompts,
           "completions": {"before": before, "after": after},
           "probs": {"before": {"target": p_before[0], "previous_answer": p_before[1]},
                     "after": {"target": p_after[0], "previous_answer": p_after[1]}},
           "edit": e.summary(), "seconds": time.perf_counter() - t0}
    return _with_html(out, args, "edit_figure", out)


def _edit_eval(args, config) -> dict:
    from interp.counterfact import evaluate, load_requests

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
    from interp.probes import SHIPPED, collect_activations, load_dataset, probe_layers

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
    resolve_hook(model, sae)
    return sae


def _sae_cosines(report, sae) -> dict:
    """The SAE features closest to the probe direction at the SAE's own layer (if probed)."""
    from interp.probes import feature_cosines

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
    from interp.probes import collect_activations, load_dataset
    from interp.steering import mean_difference, probe_direction, probe_scorer, steering_curve

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


@verb
def cmd_sae(args) -> dict:
    if args.sae_cmd == "train":
        from saes.config import ARCHITECTURES
        from saes.train import TrainConfig, init_distributed, train

        if args.arch not in ARCHITECTURES:
            raise InterpError(f"unknown SAE architecture {args.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
        init_distributed()
        model = _model(args)
        cfg = TrainConfig(hook=args.hook, architecture=args.arch, d_sae=args.d_sae, k=args.k, tokens=args.tokens,
                          batch_size=args.batch_size, lr=args.lr, corpus=args.corpus, seed=args.seed,
                          l1_coefficient=args.l1, l0_coefficient=args.l0, checkpoint_every=args.checkpoint_every,
                          compile=args.compile, activation_cache=args.activation_cache)
        res = train(model, cfg, args.out)
        return {"model": model.cfg.model_name, "out": str(res.out_dir), "hook": args.hook, "architecture": args.arch,
                "d_in": res.sae.cfg.d_in, "d_sae": res.sae.cfg.d_sae, "steps": res.steps, "tokens": res.tokens,
                "resumed_from_step": res.resumed_from, "final": res.final, "axes": {}, "seconds": res.seconds}
    from saes.evaluate import evaluate_sae
    from saes.io import load_sae

    sae = load_sae(args.dir)
    model = _model(args)
    res = evaluate_sae(model, sae, args.corpus, args.tokens, skip_rows=args.skip_rows)
    return {"model": model.cfg.model_name, "dir": args.dir, "architecture": sae.cfg.architecture,
            "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, **res.to_dict(), "axes": {}}


@verb
def cmd_app(args) -> dict:
    script = Path(__file__).resolve().parent.parent / "apps" / "explorer.py"
    if not script.is_file():
        raise InterpError(f"the explorer is not next to this install ({script} missing); "
                          "run from a source checkout (pip install -e .)")
    cmd = [sys.executable, "-m", "streamlit", "run", str(script), "--server.address", "127.0.0.1",
           "--server.port", str(args.port), "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    env = dict(os.environ)
    if args.model:
        env["INTERP_MODEL"] = args.model
    print(f"interp: explorer on http://127.0.0.1:{args.port}", file=sys.stderr)
    sys.stderr.flush()
    # Become the Streamlit server (no child left behind when this process is stopped).
    os.execve(sys.executable, cmd, env)


def _round(x, nd: int = 5):
    if isinstance(x, list):
        return [_round(v, nd) for v in x]
    return round(x, nd) if isinstance(x, float) else x


def _with_html(out: dict, args, figure: str, *fig_args) -> dict:
    """With ``--html``, draw ``interp.figures.<figure>(*fig_args)`` there and say so in ``out``."""
    if args.html:
        from interp import figures
        from interp.cache import atomic_path

        with atomic_path(args.html) as tmp:
            getattr(figures, figure)(*fig_args).write_html(tmp, include_plotlyjs=True)  # offline: no CDN
        out["html"] = args.html
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="interp", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_)
        s.add_argument("--model", default=None, help="model name or directory (default: smollm2-135m)")
        s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        return s

    add("models", "list embedded, built-in, known and cached models")
    s = add("attention", "attention patterns of a prompt")
    s.add_argument("--prompt", required=True)
    s.add_argument("--layer", type=int)
    s.add_argument("--head", type=int)
    s.add_argument("--html", help="write an interactive plotly heatmap here")
    s = add("heads", "score heads as induction / previous-token / duplicate-token heads")
    s.add_argument("--detect", choices=["induction", "previous", "duplicate"], default="induction")
    s.add_argument("--top", type=int, default=10)
    s.add_argument("--n-seqs", type=int, default=8)
    s.add_argument("--seq-len", type=int, default=50)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--html", help="write the layer×head heatmaps here")
    s = add("lens", "logit lens, and direct logit attribution with --answer/--wrong")
    s.add_argument("--prompt", required=True)
    s.add_argument("--answer")
    s.add_argument("--wrong")
    s.add_argument("--top", type=int, default=5)
    s.add_argument("--html", help="write the logit-lens curve here")
    def add_pairs(s: argparse.ArgumentParser) -> None:
        s.add_argument("--clean", required=True, action="append", help="clean prompt (repeat for a batch)")
        s.add_argument("--corrupt", required=True, action="append", help="corrupt prompt, same token length")
        s.add_argument("--answer", required=True, action="append", help="answer token, e.g. ' Paris'")
        s.add_argument("--wrong", required=True, action="append", help="wrong token, e.g. ' Rome'")
        s.add_argument("--metric", choices=["logit_diff", "prob"], default="logit_diff")

    s = add("patch", "activation patching sweep over one site (exact, batched; or attribution)")
    add_pairs(s)
    s.add_argument("--site", default="resid_pre",
                   help="resid_pre, attn_out, mlp_out, head_out, head_out_all, q, k, v, q_all, "
                        "k_all, v_all, pattern, pattern_all")
    s.add_argument("--method", choices=["exact", "attribution"], default="exact")
    s.add_argument("--direction", choices=["denoise", "noise"], default="denoise")
    s.add_argument("--compare", action="store_true", help="with attribution: also run exact, report agreement")
    s.add_argument("--html", help="write the heatmap here")
    s = add("circuit", "edge attribution patching (EAP): the top edges as a circuit, with faithfulness")
    add_pairs(s)
    s.add_argument("--edges", type=int, default=200, help="keep this many top edges by |score|")
    s.add_argument("--html", help="write the circuit graph here")
    s = add("trace", "ROME causal tracing: corrupt the subject, restore states one (token, layer) at a time")
    s.add_argument("--prompt")
    s.add_argument("--subject", help="text of the subject inside the prompt")
    s.add_argument("--answer", help="token to score (default: the model's top prediction)")
    s.add_argument("--average", action="store_true",
                   help="average indirect effects by token role over a facts file (ROME Figure 2)")
    s.add_argument("--facts", help="facts JSON for --average (default: the shipped known facts)")
    s.add_argument("--limit", type=int, help="with --average: only the first N facts")
    s.add_argument("--kind", choices=["hidden", "mlp", "attn", "all"], default="all")
    s.add_argument("--samples", type=int, default=10)
    s.add_argument("--noise", type=float, default=3.0, help="noise scale in embedding standard deviations")
    s.add_argument("--window", type=int, default=10)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--html", help="write the trace heatmaps here")
    s = add("edit", "ROME: rewrite a fact with a rank-one MLP update; or --eval a CounterFact-style set")
    s.add_argument("--prompt", help="template with {} for the subject, e.g. '{} is located in the city of'")
    s.add_argument("--subject")
    s.add_argument("--target", help="the new object, e.g. ' Rome' (several tokens allowed)")
    s.add_argument("--layer", type=int, help="MLP layer (default: peak MLP causal effect at the last subject token)")
    s.add_argument("--eval", metavar="FILE", help="request file (README 'Request files'), or 'default' for the shipped set")
    s.add_argument("--limit", type=int, help="with --eval: only the first N requests")
    s.add_argument("--no-fluency", action="store_true", help="with --eval: skip the sampled generations")
    s.add_argument("--generate", action="append", help="another prompt to complete before and after (repeatable)")
    s.add_argument("--max-new-tokens", type=int, default=20)
    s.add_argument("--steps", type=int, default=20, help="Adam steps for v*")
    s.add_argument("--cov-tokens", type=int, default=100_000, help="corpus tokens behind the key covariance C")
    s.add_argument("--corpus", help="corpus for C (default: the offline default corpus)")
    s.add_argument("--html", help="write the figure here")
    s = add("probe", "linear probes per layer with a control task: accuracy, selectivity, best layer")
    s.add_argument("--dataset", action="append", required=True,
                   help="truth, sentiment, language, pos, all, or a JSON file (repeatable)")
    s.add_argument("--layers", help="comma-separated layers (default: all)")
    s.add_argument("--site", default="resid_post", choices=["resid_post", "resid_pre", "resid_mid", "attn_out",
                                                            "mlp_out"])
    s.add_argument("--folds", type=int, default=5, help="cross-validation folds for the regularisation")
    s.add_argument("--test-size", type=float, default=0.25)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sae", help="SAELens-format SAE directory: report its features closest to each probe direction")
    s.add_argument("--html", help="write accuracy/selectivity against layer here")
    s = add("steer", "steering vector from a labelled dataset; generations and a classifier score against alpha")
    s.add_argument("--dataset", default="sentiment")
    s.add_argument("--positive", help="the label the vector points to (default: the last label)")
    s.add_argument("--layer", type=int, help="residual layer to steer (default: n_layers // 3)")
    s.add_argument("--method", choices=["mean", "probe"], default="mean",
                   help="difference of class means, or the probe's weight vector")
    s.add_argument("--alphas", default="-8,-4,0,4,8")
    s.add_argument("--prompt", action="append", help="generation prompt (repeatable)")
    s.add_argument("--max-new-tokens", type=int, default=30)
    s.add_argument("--scorer-dataset", help="dataset of the scoring probe (default: --dataset)")
    s.add_argument("--scorer-layer", type=int, help="layer of the scoring probe (default: --layer)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--html", help="write the steering curve here")
    s = add("sae", "sparse autoencoders: train on a hook, or evaluate a SAELens-format directory")
    sae_sub = s.add_subparsers(dest="sae_cmd", required=True, metavar="CMD")
    t = sae_sub.add_parser("train", help="train an SAE (resumes from DIR/checkpoint.pt; torchrun for DDP)")
    t.add_argument("--hook", required=True, help="e.g. blocks.15.hook_resid_post")
    t.add_argument("--arch", default="topk", help="relu, topk, batchtopk or jumprelu")
    t.add_argument("--k", type=int, default=32)
    t.add_argument("--d-sae", type=int, default=0, help="latents (default 16 x d_in)")
    t.add_argument("--tokens", type=int, default=2_000_000)
    t.add_argument("--batch-size", type=int, default=4096)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--l1", type=float, default=5.0, help="ReLU's L1 coefficient")
    t.add_argument("--l0", type=float, default=1.0, help="JumpReLU's L0 coefficient")
    t.add_argument("--corpus", help="corpus (default: the offline default corpus)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint-every", type=int, default=200)
    t.add_argument("--activation-cache", help="folder for activation shards reused by later runs")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument("--out", required=True)
    e = sae_sub.add_parser("eval", help="L0, FVU, CE loss recovered, KL, dead/dense latents on held-out tokens")
    e.add_argument("dir")
    e.add_argument("--corpus")
    e.add_argument("--tokens", type=int, default=32_768)
    e.add_argument("--skip-rows", type=int, default=20_000, help="start this many 128-token rows into the corpus")
    for sp in (t, e):
        sp.add_argument("--model", default=None, help="model name or directory (default: smollm2-135m)")
        sp.add_argument("--device", default=None)
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    s = add("app", "launch the Streamlit explorer on 127.0.0.1")
    s.add_argument("--port", type=int, default=8501)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
        _print_summary(args.verb, out)
    return 0


def _print_summary(verb_name: str, out: dict) -> None:
    if verb_name == "models":
        for m in out["models"]:
            print(f"{m['name']:<28} {m['kind']:<12} offline={m['offline']!s:<5} {m['description']}")
        for c in out["corpora"]:
            size = f"{c['tokens']:>10,} tokens {c['documents']:>6,} docs" if c["available"] else "not installed"
            print(f"corpus {c['name']:<10} {size}  {c['description']} ({c['package']})")
    elif verb_name == "heads":
        print(f"loss first repeat {out['loss_first_repeat']:.2f}, second {out['loss_second_repeat']:.2f} nats")
        for h in out["top"]:
            print(f"{h['name']:<8} {out['detector']} {h['score']:.3f}")
    elif verb_name == "lens":
        for i, layer in enumerate(out["layers"]):
            top = out["top_tokens"][i][0]
            extra = "" if out["answer_prob"] is None else \
                f"  P(answer)={out['answer_prob'][i]:.3f} rank {out['answer_rank'][i]}"
            print(f"{layer:<6} top {top['token']!r} {top['prob']:.3f}{extra}")
        if "dla" in out:
            d = out["dla"]
            print(f"logit diff {d['logit_diff']:.4f} = sum of DLA parts {d['sum_of_parts']:.4f}")
    elif verb_name == "patch":
        print(f"{out['method']} {out['site']} ({out['direction']}): clean {out['clean_baseline']:.3f}, "
              f"corrupt {out['corrupt_baseline']:.3f}; normalised values {out['axes']['values']}")
        if "agreement" in out:
            print(f"agreement with exact: r={out['agreement']['pearson_r']:.3f}")
    elif verb_name == "circuit":
        print(f"{out['n_edges']} of {out['n_edges_total']} edges, {len(out['nodes'])} nodes: "
              f"faithfulness {out['faithfulness']:.3f}")
        for e in out["edges"][:10]:
            print(f"  {e['src']:>8} -> {e['dst']:<8} ({e['input']}) {e['score']:+.3f}")
    elif verb_name == "trace" and "effects" in out:
        print(f"average over {out['n_facts']} facts: clean {out['mean_clean_prob']:.3f}, "
              f"corrupted {out['mean_corrupt_prob']:.3f}")
        for kind, grid in out["effects"].items():
            for role, row in zip(out["roles"], grid):
                vals = [v for v in row if v == v]
                if vals:
                    best = max(range(len(row)), key=lambda i: row[i] if row[i] == row[i] else -1)
                    print(f"  {kind:<6} {role:<24} peak AIE {row[best]:.3f} at L{best}")
    elif verb_name == "trace":
        print(f"P({out['answer']!r}) clean {out['clean_prob']:.3f}, corrupted {out['corrupt_prob']:.3f}; "
              f"subject tokens {out['subject_range']}")
        for kind, grid in out["scores"].items():
            best = max((v, t, l) for t, row in enumerate(grid) for l, v in enumerate(row))
            print(f"  {kind:<6} strongest restore: token {best[1]} {out['tokens'][best[1]]!r} layer {best[2]} "
                  f"-> {best[0]:.3f}")
    elif verb_name == "edit" and "post" in out:
        for when in ("pre", "post"):
            m = out[when]
            print(f"{when:<5} ES {m['ES']:.1f}  PS {m['PS']:.1f}  NS {m['NS']:.1f}  S {m['S']:.1f}  "
                  f"EM {m['EM']:+.1f}  PM {m['PM']:+.1f}  NM {m['NM']:+.1f}  fluency {m['fluency']}")
        print(f"{out['n_requests']} requests; mean edit time {out['edit_seconds_mean']:.1f} s")
    elif verb_name == "edit":
        e = out["edit"]
        print(f"edited layer {e['layer']} in {e['seconds']:.1f} s: P({out['target']!r}) "
              f"{out['probs']['before']['target']:.3f} -> {out['probs']['after']['target']:.3f}")
        for p, b, a in zip(out["completion_prompts"], out["completions"]["before"], out["completions"]["after"]):
            print(f"  {p!r}\n    before: {b!r}\n    after:  {a!r}")
    elif verb_name == "probe":
        for name, r in out["results"].items():
            print(f"{name:<10} best layer {r['best_layer']:>2}: accuracy {r['best_accuracy']:.3f} "
                  f"(chance {r['chance']:.2f}); selectivity {r['selectivity'][r['layers'].index(r['best_layer'])]:.3f}")
    elif verb_name == "steer":
        for a, m, g in zip(out["alphas"], out["mean_score"], out["generations"]):
            print(f"alpha {a:+6.1f}: P({out['positive']}) {m:.3f}  e.g. {g[0][:70]!r}")
    elif verb_name == "sae" and "ce_loss_recovered" in out:
        print(f"L0 {out['l0']:.1f}  FVU {out['fvu']:.3f}  CE recovered {out['ce_loss_recovered']:.3f}  "
              f"KL {out['kl_sae']:.4f}  dead {out['dead_frac']:.3f}  dense {out['dense_frac']:.3f}")
    elif verb_name == "sae":
        f = out["final"]
        print(f"trained {out['steps']} steps ({out['tokens']:,} tokens) into {out['out']}: "
              f"L0 {f.get('l0', 0):.1f}, FVU {f.get('fvu', 0):.3f}, dead {f.get('dead_frac', 0):.3f}")
    elif verb_name == "attention":
        print(f"tokens {out['tokens']}; patterns for layers {out['layers']} heads {out['heads']}"
              + (f"; figure {out['html']}" if "html" in out else ""))
    print(f"({out['seconds']:.2f} s)")


if __name__ == "__main__":
    sys.exit(main())
