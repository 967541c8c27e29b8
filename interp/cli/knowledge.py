"""``interp trace`` and ``interp edit``: where a fact lives and how to change it."""

from __future__ import annotations

import argparse

from interp.cli._common import AddParser, count, index, layer, model_of, round_floats, with_html
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]


def add_parsers(add: AddParser) -> None:
    s = add("trace", "ROME causal tracing: corrupt the subject, restore states one (token, layer) at a time")
    s.add_argument("--prompt", help="the fact's prompt, e.g. 'The Eiffel Tower is located in the city of'")
    s.add_argument("--subject", help="text of the subject inside the prompt")
    s.add_argument("--answer", help="token to score (default: the model's top prediction)")
    s.add_argument("--average", action="store_true",
                   help="average indirect effects by token role over a facts file (ROME Figure 2)")
    s.add_argument("--facts", help="facts JSON for --average (default: the shipped known facts)")
    s.add_argument("--limit", type=count, help="with --average: only the first N facts")
    s.add_argument("--kind", choices=["hidden", "mlp", "attn", "all"], default="all")
    s.add_argument("--samples", type=count, default=10)
    s.add_argument("--noise", type=float, default=3.0, help="noise scale in embedding standard deviations")
    s.add_argument("--window", type=count, default=10)
    s.add_argument("--seed", type=index, default=1)
    s.add_argument("--html", help="write the trace heatmaps here")
    s = add("edit", "ROME: rewrite a fact with a rank-one MLP update; or --eval a CounterFact-style set")
    s.add_argument("--prompt", help="template with {} for the subject, e.g. '{} is located in the city of'")
    s.add_argument("--subject", help="the subject to edit, e.g. 'The Eiffel Tower'")
    s.add_argument("--target", help="the new object, e.g. ' Rome' (several tokens allowed)")
    s.add_argument("--layer", type=layer, help="MLP layer (default: peak MLP causal effect at the last subject token)")
    s.add_argument("--eval", metavar="FILE", help="request file (README 'Request files'), or 'default' for the shipped set")
    s.add_argument("--limit", type=count, help="with --eval: only the first N requests")
    s.add_argument("--no-fluency", action="store_true", help="with --eval: skip the sampled generations")
    s.add_argument("--generate", action="append", help="another prompt to complete before and after (repeatable)")
    s.add_argument("--max-new-tokens", type=count, default=20)
    s.add_argument("--steps", type=count, default=20, help="Adam steps for v*")
    s.add_argument("--cov-tokens", type=count, default=100_000, help="corpus tokens behind the key covariance C")
    s.add_argument("--corpus", help="corpus for C (default: the offline default corpus)")
    s.add_argument("--html", help="write the figure here")


def cmd_trace(args) -> dict:
    from interp.knowledge.tracing import KINDS, trace

    kinds = list(KINDS) if args.kind == "all" else [args.kind]
    if args.average:
        return _average_trace(args, kinds)
    if args.prompt is None or args.subject is None:
        raise InterpError("trace needs --prompt and --subject (or --average over a facts file)")
    if not args.prompt.strip():
        raise InterpError("--prompt is empty: give the fact's prompt, e.g. 'The Eiffel Tower is located in the city of'")
    if not args.subject.strip():
        raise InterpError("--subject is empty: give the subject's text as it appears in --prompt")
    if args.subject not in args.prompt:
        raise InterpError(f"subject {args.subject!r} is not in the prompt {args.prompt!r}: give the subject's text "
                          "exactly as it appears there")
    model = model_of(args)
    result = trace(model, args.prompt, args.subject, args.answer, kinds, args.samples, args.noise,
                   args.window, args.seed)
    out = {"model": model.cfg.model_name, "prompt": args.prompt, "tokens": result.tokens,
           "subject": result.subject, "subject_range": list(result.subject_range),
           "answer": result.answer, "clean_prob": result.clean_prob, "corrupt_prob": result.corrupt_prob,
           "samples": result.samples, "noise_scale": result.noise_scale, "window": result.window,
           "seed": args.seed, "axes": {f"scores.{k}": ["token", "layer"] for k in kinds},
           "scores": {k: round_floats(v.tolist()) for k, v in result.scores.items()},
           "seconds": result.seconds}
    return with_html(out, args, "trace_figure", result)


def _average_trace(args, kinds) -> dict:
    from interp.knowledge.average_trace import average_trace
    from interp.knowledge.tracing import load_facts

    facts = load_facts(args.facts)
    if args.limit:
        facts = facts[:args.limit]
    model = model_of(args)
    result = average_trace(model, facts, kinds, args.samples, args.noise, args.window, args.seed)
    out = {"model": model.cfg.model_name, "n_facts": result.n_facts, "roles": list(result.roles),
           "mean_clean_prob": result.mean_clean_prob, "mean_corrupt_prob": result.mean_corrupt_prob,
           "samples": args.samples, "window": args.window, "seed": args.seed,
           "axes": {f"effects.{k}": ["role", "layer"] for k in kinds},
           "effects": {k: round_floats(v.tolist()) for k, v in result.effects.items()},
           "tokens": [], "seconds": result.seconds}
    return with_html(out, args, "average_trace_figure", result)


def cmd_edit(args) -> dict:
    from interp.knowledge.rome import RomeConfig

    config = RomeConfig(v_steps=args.steps, cov_tokens=args.cov_tokens, corpus=args.corpus)
    from interp.corpus import check_corpus

    check_corpus(args.corpus)  # the key statistics' corpus: refused before the model loads, not after
    if args.eval:
        return _edit_eval(args, config)
    if not (args.prompt and args.subject and args.target):
        raise InterpError("edit needs --prompt '{} ...', --subject and --target (or --eval FILE)")
    from interp.knowledge.counterfact import edit_report

    model = model_of(args)
    report = edit_report(model, args.prompt, args.subject, args.target, args.layer, config, args.generate or [],
                         args.max_new_tokens)
    out = {"model": model.cfg.model_name, **report.to_dict(),
           "axes": {"completions.before": ["prompt"], "completions.after": ["prompt"]}}
    if not report.reached:
        from interp.errors import warn

        p = report.probs
        warn(f"the edit did not reach its target: P({args.target!r}) {p['before']['target']:.3g} -> "
             f"{p['after']['target']:.3g}, still below P({report.previous_answer!r}) "
             f"{p['after']['previous_answer']:.3g}; try more --steps (now {args.steps}) or another --layer")
    return with_html(out, args, "edit_figure", out)


def _edit_eval(args, config) -> dict:
    from interp.knowledge.counterfact import evaluate, load_requests

    requests = load_requests(None if args.eval == "default" else args.eval)
    if args.limit:
        requests = requests[:args.limit]
    model = model_of(args)
    result = evaluate(model, requests, args.layer, config, fluency=not args.no_fluency)
    out = {"model": model.cfg.model_name, "n_requests": len(requests), "file": args.eval,
           "axes": {"requests": ["request"]}, "tokens": [], **result.to_dict()}
    return with_html(out, args, "edit_eval_figure", out)



COMMANDS = {"trace": cmd_trace, "edit": cmd_edit}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The terminal form of a knowledge verb's result (without ``--json``)."""
    if verb_name == "trace" and "effects" in out:
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
