"""``interp gcg``: GCG token search for a target, or feature visualisation by prompt optimisation."""

from __future__ import annotations

import argparse

from interp.cli._common import AddParser, count, feature, index, model_of
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]


def add_parsers(add: AddParser) -> None:
    s = add("gcg", "GCG: optimise prompt tokens to force a target, or to maximise an SAE feature")
    s.add_argument("--prompt", help="the prompt; {optim} marks the optimised string (default: appended at the end; "
                                     "with --sae the prompt defaults to 'The{optim}')")
    s.add_argument("--target", help="the text to force after the prompt, e.g. ' Sure, here is'")
    s.add_argument("--sae", help="SAELens-format SAE directory: maximise --feature at the prompt's last token")
    s.add_argument("--feature", type=feature, help="with --sae: the feature to maximise")
    s.add_argument("--steps", type=count, default=100)
    s.add_argument("--search-width", type=count, default=512, help="candidates evaluated per step")
    s.add_argument("--topk", type=count, default=256, help="tokens kept per position from the gradient")
    s.add_argument("--n-replace", type=count, default=1, help="positions swapped per candidate")
    s.add_argument("--buffer", type=count, default=4, help="best strings kept")
    s.add_argument("--init", default=None,
                   help="the starting string, whose token count is the span's length (default: ' x' * 20; with --sae "
                        "' one two three four five': a repeated token puts every position in the same state)")
    s.add_argument("--fluency", type=float, default=0.0, help="λ: weight of the span's own NLL (EPO)")
    s.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    s.add_argument("--non-ascii", action="store_true", help="allow non-ASCII tokens")
    s.add_argument("--batch-size", type=count, default=128, help="candidates per forward pass")
    s.add_argument("--max-new-tokens", type=count, default=10, help="greedy continuation shown with the result")
    s.add_argument("--seed", type=index, default=0)


def cmd_gcg(args: argparse.Namespace) -> dict:
    from interp import gcg as G

    if bool(args.target) == bool(args.sae):
        raise InterpError("gcg needs either --target TEXT (force a completion) or --sae DIR --feature F")
    if args.sae and args.feature is None:
        raise InterpError("--sae needs --feature F, the feature to maximise")
    prompt = args.prompt if args.prompt is not None else ("The" if args.sae else None)
    init = args.init if args.init is not None else (" one two three four five" if args.sae else " x" * 20)
    if prompt is None:
        raise InterpError("gcg --target needs --prompt (the benign prompt the string is appended to)")
    if not prompt.strip():
        raise InterpError(f"--prompt {prompt!r} is blank: give the text the optimised string is appended to, "
                          f"or mark where it goes with {G.SLOT}")
    given = prompt
    if G.SLOT not in prompt:
        prompt = prompt + G.SLOT
    model = model_of(args)
    if args.sae:
        from saes.io import load_sae

        sae = load_sae(args.sae, device=model.cfg.device)
        objective = G.feature_objective(sae, args.feature)
    else:
        objective = G.target_objective(model, args.target)
    cfg = G.GCGConfig(steps=args.steps, search_width=args.search_width, topk=args.topk, n_replace=args.n_replace,
                      buffer_size=args.buffer, optim_init=init, allow_non_ascii=args.non_ascii,
                      fluency=args.fluency, batch_size=args.batch_size, seed=args.seed)
    res = G.gcg(model, prompt, objective, cfg, chat=args.chat)
    from interp.generation import generate

    filled = prompt.replace(G.SLOT, res.best_string)
    text = filled
    if args.chat:
        text = model.tokenizer.apply_chat_template([{"role": "user", "content": filled}], tokenize=False,
                                                   add_generation_prompt=True)
    continuation = generate(model, text, args.max_new_tokens)
    out = {"model": model.cfg.model_name, "prompt": given, "objective": res.objective, "target": args.target,
           "best_suffix": res.best_string, "best_ids": res.best_ids, "best_loss": res.best_loss,
           "initial_loss": res.extra["initial_loss"], "success": res.success, "steps_run": res.extra["steps_run"],
           "axes": {"losses": ["step"], "strings": ["step"], "times": ["step"]}, "losses": res.losses,
           "strings": res.strings, "times": res.times, "filled_prompt": filled, "continuation": continuation,
           "seconds": res.seconds}
    if args.sae:
        from saes.features.extract import encode_text

        _, feats, _ = encode_text(model, sae, filled)
        out["feature"], out["pre_activation"] = args.feature, -res.best_loss
        out["activation"] = float(feats[-1, args.feature])  # the feature itself at the last token
    return out


COMMANDS = {"gcg": cmd_gcg}


def summary(verb_name: str, args: argparse.Namespace, out: dict) -> None:
    """The loss before and after, the best string, and the completion it gives."""
    print(f"{out['objective']}: loss {out['initial_loss']:.3f} -> {out['best_loss']:.3f} in {out['steps_run']} steps"
          + (" (target reached)" if out["success"] else ""))
    print(f"  best string: {out['best_suffix']!r}")
    print(f"  {out['filled_prompt']!r} -> {out['continuation']!r}")
