"""The ``interp`` command's arguments: one sub-parser per verb, documented in the README.

Sizes and counts are checked here, before a model loads: ``count`` (at least 1) and
``index`` (at least 0; layers and heads are never negative, so ``--layer -1`` is refused
rather than silently meaning the last layer). A bad argument is one ``interp: error:``
line and exit status 2, like every other bad input.
"""

from __future__ import annotations

import argparse
import sys


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


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, not {text!r}") from None


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``interp: error: <verb> --flag: message`` and exit 2."""

    def add_argument(self, *args, **kwargs):
        if args and str(args[0]).startswith("-") and not kwargs.get("help") and kwargs.get("default") is not None:
            kwargs["help"] = "(default: %(default)s)"  # argparse shows no default for a flag without help
        return super().add_argument(*args, **kwargs)

    def error(self, message: str):
        sys.stderr.write(f"interp: error: {self.prog.removeprefix('interp ')}: {message}\n")
        sys.exit(2)


class _Help(argparse.RawDescriptionHelpFormatter):
    """Show each flag's default where it has one and the help does not already say it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("interp-workbench")
    except PackageNotFoundError:
        return "source checkout"


def build_parser(description: str) -> argparse.ArgumentParser:
    p = _Parser(prog="interp", description=description, formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"interp {_version()}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=help_, formatter_class=_Help)
        s.add_argument("--model", default=None, help="model name or directory (default: smollm2-135m)")
        s.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present)")
        s.add_argument("--device-map", choices=["auto"], default=None,
                       help="split a model too large for one GPU over every GPU, then the CPU (instead of --device)")
        s.add_argument("--json", action="store_true", help="print one JSON object on stdout")
        return s

    add("models", "list embedded, built-in, known and cached models")
    s = add("attention", "attention patterns of a prompt")
    s.add_argument("--prompt", required=True, help="the text whose attention to show")
    s.add_argument("--layer", type=index, help="one layer (default: all; long prompts need one)")
    s.add_argument("--head", type=index, help="one head of --layer (default: all)")
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
    s.add_argument("--layer", type=index, help="MLP layer (default: peak MLP causal effect at the last subject token)")
    s.add_argument("--eval", metavar="FILE", help="request file (README 'Request files'), or 'default' for the shipped set")
    s.add_argument("--limit", type=count, help="with --eval: only the first N requests")
    s.add_argument("--no-fluency", action="store_true", help="with --eval: skip the sampled generations")
    s.add_argument("--generate", action="append", help="another prompt to complete before and after (repeatable)")
    s.add_argument("--max-new-tokens", type=count, default=20)
    s.add_argument("--steps", type=count, default=20, help="Adam steps for v*")
    s.add_argument("--cov-tokens", type=count, default=100_000, help="corpus tokens behind the key covariance C")
    s.add_argument("--corpus", help="corpus for C (default: the offline default corpus)")
    s.add_argument("--html", help="write the figure here")
    s = add("probe", "linear probes per layer with a control task: accuracy, selectivity, best layer")
    s.add_argument("--dataset", action="append", required=True,
                   help="truth, sentiment, language, pos, all, or a JSON file (repeatable)")
    s.add_argument("--layers", help="comma-separated layers (default: all)")
    s.add_argument("--site", default="resid_post", choices=["resid_post", "resid_pre", "resid_mid", "attn_out",
                                                            "mlp_out"])
    s.add_argument("--folds", type=count, default=5, help="cross-validation folds for the regularisation")
    s.add_argument("--test-size", type=float, default=0.25)
    s.add_argument("--seed", type=index, default=0)
    s.add_argument("--sae", help="SAELens-format SAE directory: report its features closest to each probe direction")
    s.add_argument("--force", action="store_true", help="use an --sae whose cfg.json names another model")
    s.add_argument("--html", help="write accuracy/selectivity against layer here")
    s = add("steer", "steering vector from a labelled dataset; generations and a classifier score against alpha")
    s.add_argument("--dataset", default="sentiment")
    s.add_argument("--positive", help="the label the vector points to (default: the last label)")
    s.add_argument("--layer", type=index, help="residual layer to steer (default: n_layers // 3)")
    s.add_argument("--method", choices=["mean", "probe"], default="mean",
                   help="difference of class means, or the probe's weight vector")
    s.add_argument("--alphas", default="-8,-4,0,4,8")
    s.add_argument("--prompt", action="append", help="generation prompt (repeatable)")
    s.add_argument("--max-new-tokens", type=count, default=30)
    s.add_argument("--scorer-dataset", help="dataset of the scoring probe (default: --dataset)")
    s.add_argument("--scorer-layer", type=index, help="layer of the scoring probe (default: --layer)")
    s.add_argument("--seed", type=index, default=0)
    s.add_argument("--html", help="write the steering curve here")
    from interp.cli.gcg import add_gcg_parser
    from interp.cli.relation import add_relation_parser
    from interp.cli.sae import add_sae_parser
    from interp.cli.weights import add_weights_parser

    add_relation_parser(add)
    add_weights_parser(add)
    add_gcg_parser(add)
    add_sae_parser(add)
    s = add("app", "launch the Streamlit explorer on 127.0.0.1")
    s.add_argument("--port", type=count, default=8501)
    return p
