"""``interp sae ...``: train and evaluate SAEs, extract their features into a store, and read it.

Verbs that read a store (``top``, ``search``, ``dashboard``, ``export``) load no model and
import no torch: a store carries its vocabulary, so they answer in about a second. ``extract``, ``active``,
``steer`` and ``explain`` load the model (and ``explain`` its explainer and scorer).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from interp.cli._common import AddParser, count, feature, index, layer_list, model_of, positions, quiet_transformers, with_html
from interp.cli._sae_summary import summary
from interp.errors import InterpError

__all__ = ["COMMANDS", "add_parsers", "summary"]


def add_parsers(add: AddParser) -> None:
    s = add("sae", "sparse autoencoders: train, evaluate, extract features into a store, and read, steer "
                   "and explain them")
    sub = s.add_subparsers(dest="sae_cmd", required=True, metavar="CMD")
    model_verbs = []
    t = sub.add_parser("train", help="train an SAE, or with --layers one per layer from one model pass; --transcoder "
                                     "for skip transcoders of the MLPs (resumes from checkpoints; torchrun for DDP)")
    t.add_argument("--hook", help="e.g. blocks.15.hook_resid_post; with --layers a template, blocks.{l}.hook_resid_post "
                                  "(--transcoder: default blocks.{l}.hook_resid_mid; on Gemma blocks.{l}.ln2.hook_out, "
                                  "the pre-feedforward norm's output)")
    t.add_argument("--transcoder", action="store_true",
                   help="skip transcoders: read each MLP's input and predict its output (blocks.{l}.hook_mlp_out)")
    t.add_argument("--clt", action="store_true",
                   help="one cross-layer transcoder over --layers A-B: each layer's features read its MLP input and "
                        "write every MLP output from there on (jumprelu or topk; --d-sae per layer, default 4 x d_in; "
                        "saved in circuit-tracer's CLT layout)")
    t.add_argument("--hook-out", help="a transcoder's target hook template (default blocks.{l}.hook_mlp_out)")
    t.add_argument("--no-skip", action="store_true", help="transcoders without the linear skip path W_skip")
    t.add_argument("--layers", type=layer_list, help="train one dictionary per layer from one model pass: 0-29, 3,5,7 or all; "
                                    "writes OUT/layer_{l}/ and OUT/set.json")
    t.add_argument("--block-rows", type=count, default=None,
                   help="corpus rows harvested per block (default 256, fewer for many layers: about 1 GB per block)")
    t.add_argument("--arch", default="topk", help="relu, topk, batchtopk or jumprelu")
    t.add_argument("--k", type=count, default=32)
    t.add_argument("--d-sae", type=index, default=0, help="latents (default 16 x d_in)")
    t.add_argument("--tokens", type=count, default=2_000_000)
    t.add_argument("--batch-size", type=count, default=4096)
    t.add_argument("--lr", type=float, default=0.0,
                   help="learning rate (default 2e-4 x sqrt(16384 / d_sae): 2.7e-4 at 9216 latents)")
    t.add_argument("--l1", type=float, default=5.0, help="ReLU's L1 coefficient")
    t.add_argument("--l0", type=float, default=1.0, help="JumpReLU's L0 coefficient")
    t.add_argument("--init-l0", type=float, default=0.0,
                   help="JumpReLU: initial thresholds set from data for this L0 (recommended for short runs)")
    t.add_argument("--corpus", help="corpus (default: the offline default corpus)")
    t.add_argument("--epochs", type=count, default=1,
                   help="passes allowed over the corpus; later passes revisit its blocks in a new order, reshuffled")
    t.add_argument("--seed", type=index, default=0, help="seeds the corpus shuffle and, by default, the initial weights")
    t.add_argument("--init-seed", type=index, default=None,
                   help="seeds only the initial weights: runs differing in it see the same tokens (and share --activation-cache)")
    t.add_argument("--checkpoint-every", type=count, default=200)
    t.add_argument("--activation-cache", help="folder for activation shards reused by later runs")
    t.add_argument("--compile", action="store_true", help="torch.compile the training step")
    t.add_argument("--out", required=True, help="directory for the SAE, its checkpoint and metrics.jsonl")
    e = sub.add_parser("eval", help="L0, FVU, CE loss recovered, KL, dead/dense latents on held-out tokens; for a "
                                    "transcoder set, each layer and the replacement model with every MLP replaced")
    e.add_argument("dir", help="an SAE directory, or a set (ours, circuit-tracer's config.yaml, or sparsify's)")
    e.add_argument("--html", help="a set: write the per-layer fidelity figure here")
    e.add_argument("--no-per-layer", action="store_true",
                   help="a set: skip each layer's own CE loss recovered (2 forwards per layer and batch)")
    e.add_argument("--corpus", help="corpus of the held-out rows (default: the offline default corpus)")
    e.add_argument("--tokens", type=count, default=None, help="held-out tokens (default 32,768; 4,096 for a set)")
    e.add_argument("--skip-rows", type=index, default=None,
                   help="start this many 128-token rows into the corpus (default: past the SAE's recorded training rows)")
    e.add_argument("--force", action="store_true", help="evaluate an SAE whose cfg.json names another model")
    x = sub.add_parser("extract", help="feature activations of one or more SAEs over a corpus into a Parquet store "
                                       "(resumable; torchrun for several processes)")
    x.add_argument("dirs", nargs="+", metavar="DIR", help="SAE directories (one model pass serves them all)")
    x.add_argument("--out", required=True, help="the store's directory (an existing store is resumed)")
    x.add_argument("--corpus", help="corpus (default: the offline default corpus)")
    x.add_argument("--tokens", type=count, help="stop after about this many tokens (default: the whole corpus)")
    x.add_argument("--ctx", type=int, default=128, help="tokens per context; documents are cut into contexts")
    x.add_argument("--contexts-per-shard", type=count, default=256)
    x.add_argument("--model-batch", type=count, default=32, help="contexts per forward pass")
    for sp in (t, e, x):
        sp.add_argument("--max-norm-ratio", type=float, default=10.0,
                        help="skip tokens whose activation norm is above this multiple of the median (0: keep all)")
    model_verbs += [t, e, x]
    a = sub.add_parser("active", help="the features active on each token of a text, run live")
    a.add_argument("dir")
    a.add_argument("--text", required=True, help="the text to encode")
    a.add_argument("--top", type=count, default=5, help="features per token")
    st = sub.add_parser("steer", help="generate with one feature clamped (or added), keeping the SAE's error")
    st.add_argument("dir")
    st.add_argument("--feature", type=feature, required=True, help="the feature to steer")
    st.add_argument("--scale", type=float, required=True, help="multiple of the feature's maximum activation")
    st.add_argument("--prompt", action="append", required=True, help="prompt (repeatable)")
    st.add_argument("--store", help="a store of this SAE: the feature's maximum activation comes from it")
    st.add_argument("--max-act", type=float, help="the feature's maximum activation, without a store")
    st.add_argument("--mode", choices=["clamp", "add"], default="clamp")
    st.add_argument("--positions", type=positions, help="comma-separated prompt positions to steer (default: every position)")
    st.add_argument("--max-new-tokens", type=count, default=30)
    st.add_argument("--sample", action="store_true", help="sample (top-20, seeded) instead of greedy decoding")
    st.add_argument("--seed", type=index, default=0)
    ex = sub.add_parser("explain", help="explain a feature with a language model and score the explanation "
                                        "(detection, fuzzing) on held-out contexts")
    ex.add_argument("store")
    ex.add_argument("--feature", type=index, required=True, help="the feature to explain")
    ex.add_argument("--explainer", default=None, help="causal LM that writes the explanation (default: the embedded model)")
    ex.add_argument("--scorer", default=None, help="causal LM that scores it (default: the explainer)")
    ex.add_argument("--explanation", help="score this explanation instead of writing one")
    ex.add_argument("--examples", type=count, default=12, help="contexts shown to the explainer")
    ex.add_argument("--held-out", type=count, default=16, help="activating (and as many random) contexts per score")
    ex.add_argument("--seed", type=index, default=0)
    model_verbs += [a, st, ex]
    for sp in model_verbs:
        sp.add_argument("--model", default=None, help="model name or directory (default: smollm2-135m)")
        sp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if present; "
                        "under torchrun each rank's own GPU)")
    tp = sub.add_parser("top", help="top-k contexts of a feature from a store (DuckDB; no model)")
    tp.add_argument("store")
    tp.add_argument("--feature", type=index, required=True, help="feature index")
    tp.add_argument("--k", type=count, default=10)
    tp.add_argument("--window", type=index, help="tokens kept either side of the maximum (default: whole contexts)")
    se = sub.add_parser("search", help="the features that fire most on a token across a store")
    se.add_argument("store")
    se.add_argument("--token", required=True, help="a token's text, e.g. ' Paris'")
    se.add_argument("--top", type=count, default=10)
    db = sub.add_parser("dashboard", help="everything a feature page shows, from a store; --html writes the page")
    db.add_argument("store")
    db.add_argument("--feature", type=index, required=True, help="feature index")
    db.add_argument("--html", help="write a self-contained offline HTML page here")
    db.add_argument("--k", type=count, default=10, help="top contexts")
    db.add_argument("--window", type=index, default=16)
    xp = sub.add_parser("export", help="write a store in Neuronpedia's export layout")
    xp.add_argument("store")
    xp.add_argument("--format", choices=["neuronpedia"], default="neuronpedia")
    xp.add_argument("--out", required=True, help="directory of the export")
    xp.add_argument("--batch", type=count, default=128, help="features per batch file")
    for sp in (tp, se, db, xp, ex):
        sp.add_argument("--sae", help="which SAE of a store holding several (default: the first)")
    for sp in (*model_verbs, tp, se, db, xp):
        sp.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def cmd_sae(args) -> dict:
    return {"train": _train, "eval": _eval, "extract": _extract, "active": _active, "steer": _steer,
            "explain": _explain, "top": _top, "search": _search, "dashboard": _dashboard,
            "export": _export}[args.sae_cmd](args)


def _train(args) -> dict:
    from interp.cache import check_writable
    from interp.corpus import check_corpus
    from saes.config import ARCHITECTURES
    from saes.train import TrainConfig, check_train_out, init_distributed, train

    if args.arch not in ARCHITECTURES:
        raise InterpError(f"unknown SAE architecture {args.arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    hook, hook_out, layers = _train_hooks(args)
    cfg = TrainConfig(hook=hook, hook_out=hook_out, skip=not args.no_skip, layers=layers, clt=args.clt,
                      block_rows=args.block_rows or 0, architecture=args.arch, d_sae=args.d_sae, k=args.k, tokens=args.tokens,
                      batch_size=args.batch_size, lr=args.lr, corpus=args.corpus, seed=args.seed,
                      init_seed=args.init_seed, l1_coefficient=args.l1, l0_coefficient=args.l0, init_l0=args.init_l0,
                      max_norm_ratio=args.max_norm_ratio, checkpoint_every=args.checkpoint_every,
                      compile=args.compile, activation_cache=args.activation_cache, epochs=args.epochs)
    check_corpus(args.corpus)  # every check that needs no model comes before it loads
    check_train_out(cfg, args.out)
    check_writable(args.out, "--out")
    init_distributed(args.device)
    model = model_of(args)  # under torchrun, on this rank's own GPU (interp.distributed.local_device)
    if layers is not None:
        from saes.transcoder import parse_layers

        parse_layers(args.layers, model.cfg.n_layers)  # the range, now that the model says how many
    res = train(model, cfg, args.out)
    out = {"model": model.cfg.model_name, "out": str(res.out_dir), "hook": hook, "architecture": args.arch,
           "d_in": res.sae.cfg.d_in, "d_sae": res.sae.cfg.d_sae, "steps": res.steps, "tokens": res.tokens,
           "resumed_from_step": res.resumed_from, "final": res.final, "epochs": res.final.get("epoch", 1),
           "memory": res.memory, "axes": {}, "seconds": res.seconds}
    if layers is not None:
        per_layer = [{"layer": layer, **res.finals[layer]} for layer in layers]
        out.update(hook_out=hook_out, transcoder=bool(hook_out), clt=args.clt, layers=layers, per_layer=per_layer,
                   final=set_final(per_layer), axes={"per_layer": ["layer"]})
    return out


def set_final(per_layer: list[dict]) -> dict:
    """A set's last metrics as one record: each metric's mean over the layers, and the worst layer's FVU
    and its layer (a set's ``final`` used to be its first layer's)."""
    keys = [k for k in per_layer[0] if k != "layer" and isinstance(per_layer[0][k], (int, float))]
    mean = {k: sum(f[k] for f in per_layer) / len(per_layer) for k in keys}
    worst = max(per_layer, key=lambda f: f.get("fvu", 0.0))
    return {**mean, "over": "mean of the layers", "worst_fvu": worst.get("fvu"), "worst_fvu_layer": worst["layer"]}


def _train_hooks(args) -> tuple[str, str, list[int] | None]:
    """(hook or template, transcoder target template or "", layers or None), refused in one line where
    they do not fit together."""
    from saes.transcoder import check_transcoder_hooks, parse_layers

    layers = parse_layers(args.layers) if args.layers is not None else None
    if args.clt:
        if args.arch not in ("jumprelu", "topk"):
            raise InterpError(f"a CLT is trained as jumprelu or topk, not {args.arch}: give --arch jumprelu or topk")
        if layers is None or layers != list(range(layers[0], layers[-1] + 1)):
            raise InterpError("--clt needs a contiguous range of layers: give --layers A-B (e.g. 0-29)")
    if args.transcoder or args.clt:
        if args.hook:
            hook = args.hook
        else:  # where the family's transcoders read: Gemma's normed MLP input, as Gemma Scope 2 does
            from interp.models import model_architecture

            hook = model_architecture(args.model).transcoder_input
        hook_out = args.hook_out or "blocks.{l}.hook_mlp_out"
        if layers is None:
            raise InterpError("--transcoder trains one transcoder per layer: give --layers (e.g. 0-29, or 15)")
        if args.clt and args.arch == "topk" and args.d_sae and args.k > args.d_sae:
            raise InterpError(f"--k {args.k} is more than --d-sae {args.d_sae}")
        check_transcoder_hooks(hook, hook_out)
    else:
        if args.hook_out or args.no_skip:
            raise InterpError("--hook-out and --no-skip are for --transcoder")
        if not args.hook:
            raise InterpError("give --hook (e.g. blocks.15.hook_resid_post), or --transcoder --layers 0-29")
        hook, hook_out = args.hook, ""
    if layers is not None and "{l}" not in hook:
        raise InterpError(f"with --layers, --hook is a template with {{l}} for the layer, e.g. "
                          f"blocks.{{l}}.hook_resid_post, not {hook!r}")
    if layers is None and "{l}" in hook:
        raise InterpError(f"--hook {hook!r} is a template: give --layers too")
    return hook, hook_out, layers


def _eval(args) -> dict:
    from saes.config import CFG, check_sae_dir

    d = Path(args.dir)
    if d.is_dir() and not (d / CFG).exists() and ((d / "set.json").exists() or (d / "config.yaml").exists() or
                                                  (d / "W_enc_0.safetensors").exists() or
                                                  (d / "params_layer_0.safetensors").exists() or
                                                  any(p.joinpath("sae.safetensors").exists() for p in d.iterdir())):
        return _eval_set(args)
    check_sae_dir(args.dir)  # before torch loads
    from interp.corpus import check_corpus
    from saes.evaluate import evaluate_sae
    from saes.io import load_sae

    sae = load_sae(args.dir)
    check_corpus(args.corpus)
    model = model_of(args)
    res = evaluate_sae(model, sae, args.corpus, args.tokens or 32_768, skip_rows=args.skip_rows,
                       max_norm_ratio=args.max_norm_ratio, force=args.force)
    return {"model": model.cfg.model_name, "dir": args.dir, "architecture": sae.cfg.architecture,
            "d_in": sae.cfg.d_in, "d_sae": sae.cfg.d_sae, **res.to_dict(), "axes": {}}


def _eval_set(args) -> dict:
    from interp.corpus import check_corpus
    from saes.replacement import evaluate_replacement
    from saes.transcoder import load_set

    tset = load_set(args.dir)
    if not tset.transcoders:
        raise InterpError(f"{args.dir} is a set of SAEs; evaluate one layer's folder (e.g. {args.dir}/layer_0)")
    check_corpus(args.corpus)
    model = model_of(args)
    res = evaluate_replacement(model, tset, args.corpus, args.tokens or 4096, skip_rows=args.skip_rows,
                               max_norm_ratio=args.max_norm_ratio, per_layer=not args.no_per_layer, force=args.force)
    found = res.to_dict()
    worse = [f for f in found["layers"] if f["fvu"] > 1]
    if worse:
        from interp.errors import warn

        warn(f"held-out FVU above 1 on layer{'s' if len(worse) > 1 else ''} "
             + ", ".join(f"{f['layer']} ({f['fvu']:.2f})" for f in worse)
             + ": those transcoders predict their MLP's output worse than its mean does; train them longer "
               "(more --tokens) before reading their graphs")
    return with_html({"model": model.cfg.model_name, "dir": args.dir, "source": tset.source, **found,
                      "axes": {"layers": ["layer"]}}, args, "replacement_figure", res)


def _extract(args) -> dict:
    if args.ctx < 2:  # before any import: the cheapest refusal there is
        raise InterpError(f"--ctx must be at least 2 (a context's first token is the attention sink), not {args.ctx}")
    from interp.cache import check_writable
    from interp.corpus import check_corpus
    from saes.config import check_sae_dir

    for d in args.dirs:  # every check that needs no model comes before it loads, the torch-free ones first
        check_sae_dir(d)
    check_corpus(args.corpus)
    from interp.distributed import init_distributed
    from saes.features.extract import ExtractConfig, check_store_out, extract_features

    cfg = ExtractConfig(corpus=args.corpus, tokens=args.tokens, ctx=args.ctx,
                        contexts_per_shard=args.contexts_per_shard, model_batch=args.model_batch,
                        max_norm_ratio=args.max_norm_ratio)
    check_store_out(args.out)
    check_writable(args.out, "--out")
    init_distributed(args.device)
    model = model_of(args)
    res = extract_features(model, args.dirs, args.out, cfg)
    return {"model": model.cfg.model_name, "corpus": args.corpus or "default", **res.to_dict(), "axes": {}}


def _active(args) -> dict:
    from interp.tokens import joined_text
    from saes.features.extract import encode_text
    from saes.io import load_sae, resolve_hook

    if not args.text.strip():
        raise InterpError("--text is empty: give the text whose features to show")
    sae = load_sae(args.dir)
    model = model_of(args)
    resolve_hook(model, sae)
    sae = sae.to(model.cfg.device)
    t0 = time.perf_counter()
    tokens, f, skipped = encode_text(model, sae, args.text)
    top = f.topk(min(args.top, f.shape[1]), dim=-1)
    rows = [[{"feature": int(j), "value": round(float(v), 5)} for v, j in zip(vs, js) if v > 0]
            for vs, js in zip(top.values.tolist(), top.indices.tolist())]
    return {"model": model.cfg.model_name, "hook": sae.cfg.hook_name, "tokens": tokens,
            "token_text": joined_text(tokens), "skipped": skipped,
            "axes": {"features": ["pos", "rank"], "token_text": ["pos"]}, "features": rows,
            "seconds": time.perf_counter() - t0}


def _steer(args) -> dict:

    from saes.io import load_sae, resolve_hook
    from saes.features.steer import steer_feature

    positions = args.positions
    sae = load_sae(args.dir)
    if not 0 <= args.feature < sae.cfg.d_sae:
        raise InterpError(f"feature {args.feature} is out of range: the SAE has {sae.cfg.d_sae} features "
                          f"(0-{sae.cfg.d_sae - 1})")
    if args.store:
        from saes.features.store import FeatureStore

        store = FeatureStore(args.store)
        entry = next((s for s in store.manifest["saes"] if s["d_sae"] == sae.cfg.d_sae
                      and s["hook"] == sae.cfg.hook_name), None)
        if entry is None:
            raise InterpError(f"{args.store} holds no SAE like {args.dir} ({sae.cfg.hook_name}, {sae.cfg.d_sae} features)")
        max_act = store.feature_row(args.feature, entry["name"])["max"]
    elif args.max_act is not None:
        if not (math.isfinite(args.max_act) and args.max_act > 0):
            raise InterpError(f"--max-act must be a positive finite number (the feature's largest activation), "
                              f"not {args.max_act}")
        max_act = args.max_act
    else:
        raise InterpError("give --store STORE (where the feature's maximum activation comes from) or --max-act A")

    if not math.isfinite(args.scale):
        raise InterpError(f"--scale must be a finite number, not {args.scale}")
    model = model_of(args)
    resolve_hook(model, sae)
    res = steer_feature(model, sae.to(model.cfg.device), args.feature, args.scale, args.prompt, max_act, args.mode,
                        positions, args.max_new_tokens, greedy=not args.sample, seed=args.seed)
    return {"model": model.cfg.model_name, **res.to_dict(),
            "axes": {"activation_before": ["prompt", "pos"], "activation_after": ["prompt", "pos"],
                     "before": ["prompt"], "after": ["prompt"]}}


DEFAULT_SCORER_WARNING = (
    "the embedded 135M model cannot tell a right explanation from a wrong one as scorer (README, "
    "'Explanations and their scores': detection 0.35 for the right one, 0.42 for a wrong one); "
    "pass --explainer/--scorer NAME, a larger causal LM, for scores worth comparing")


def _explain(args) -> dict:
    from interp.errors import warn
    from interp.models import DEFAULT_MODEL, canonical_name, load_model
    from saes.features import autointerp as ai
    from saes.features.store import FeatureStore

    store = FeatureStore(args.store)
    name = store.sae(args.sae)["name"]
    store.check_feature(args.feature, name)
    if store.feature_row(args.feature, name)["fires"] == 0:
        raise InterpError(f"feature {args.feature} never fired in {args.store}: there is nothing to explain")
    device = args.device
    explainer_name = args.explainer or args.model or "smollm2-135m"
    scorer_name = args.scorer or explainer_name
    quiet_transformers()  # transformers' own "Loading weights" bar, as model_of does for every other verb
    warning = ""
    if canonical_name(scorer_name) == DEFAULT_MODEL:
        warning = DEFAULT_SCORER_WARNING
        warn(warning)
    t0 = time.perf_counter()
    top = store.top_contexts(args.feature, max(2, args.examples * 2 // 3), name, window=12)
    groups = store.quantile_groups(args.feature, 5, 2, name, window=12, seed=args.seed)
    shown = (top + [c for _, _, cs in groups for c in cs[:1]])[:args.examples]
    explanation = args.explanation
    explainer = None
    if explanation is None:
        explainer = load_model(explainer_name, device=device)
        explanation = ai.explain(explainer, shown)
    scorer = explainer if (explainer is not None and scorer_name == explainer_name) else load_model(scorer_name, device=device)
    activating, quiet = ai.held_out(store, args.feature, name, {c.context for c in shown}, args.held_out, 12, args.seed)
    detection = ai.score_detection(scorer, explanation, activating, quiet) if activating and quiet else None
    fuzzing = ai.score_fuzzing(scorer, explanation, activating, args.seed) if activating else None
    row = ai.save_explanation(store, name, args.feature, explanation,
                              "(given)" if args.explanation else explainer.cfg.model_name, scorer.cfg.model_name,
                              detection, fuzzing, args.seed, warning)
    for kind, score in (("detection", detection), ("fuzzing", fuzzing)):
        if score and min(score.n_positive, score.n_negative) < ai.MIN_PER_CLASS:
            warn(f"{kind} scored on only {score.n_positive}+{score.n_negative} held-out contexts (fewer than "
                 f"{ai.MIN_PER_CLASS} a side): its interval [{score.low:.2f}, {score.high:.2f}] is wide; extract "
                 "more tokens into the store or raise --held-out")
    return {"model": store.manifest["model"], "sae": name, "feature": args.feature, "explanation": explanation,
            "explainer": row["explainer"], "scorer": row["scorer"], "prompt_version": ai.PROMPT_VERSION,
            "shown": [ai.format_example(c.tokens, {j for j, v in enumerate(c.values) if v > 0}) for c in shown],
            "detection": detection.__dict__ if detection else None, "fuzzing": fuzzing.__dict__ if fuzzing else None,
            "n_held_out": {"activating": len(activating), "random": len(quiet)}, "warning": warning or None,
            "axes": {},
            "seconds": time.perf_counter() - t0}


def _top(args) -> dict:
    from saes.features.store import FeatureStore

    store = FeatureStore(args.store)
    t0 = time.perf_counter()
    top = store.top_contexts(args.feature, args.k, args.sae, args.window)
    return {"store": args.store, "sae": store.sae(args.sae)["name"], "feature": args.feature,
            "axes": {"contexts": ["rank"], "contexts.values": ["pos"]}, "contexts": [c.to_dict() for c in top],
            "seconds": time.perf_counter() - t0}


def _search(args) -> dict:
    from saes.features.store import FeatureStore

    store = FeatureStore(args.store)
    t0 = time.perf_counter()
    rows = store.search_token(args.token, args.top, args.sae)
    return {"store": args.store, "sae": store.sae(args.sae)["name"], "token": args.token,
            "occurrences": rows[0]["occurrences"] if rows else 0, "axes": {"features": ["rank"]},
            "features": [{k: v for k, v in r.items() if k != "occurrences"} for r in rows],
            "seconds": time.perf_counter() - t0}


def _dashboard(args) -> dict:
    from interp.cache import atomic_path
    from saes.features.dashboard import feature_dashboard
    from saes.features.store import FeatureStore

    store = FeatureStore(args.store)
    d = feature_dashboard(store, args.feature, args.sae, k=args.k, window=args.window)
    out = {"store": args.store, **d.to_dict(), "axes": {"hist_counts": ["bin"], "top": ["rank"]}}
    if args.html:
        with atomic_path(args.html) as tmp:
            tmp.write_text(d.html())
        out["html"] = args.html
    return out


def _export(args) -> dict:
    from saes.features.export import export_neuronpedia
    from saes.features.store import FeatureStore

    store = FeatureStore(args.store)
    from interp.cache import check_writable

    if not Path(args.out).is_file():  # a file in the way has its own line
        check_writable(args.out, "--out")
    return {"store": args.store, "format": args.format, **export_neuronpedia(store, args.out, args.sae, args.batch),
            "axes": {}}


COMMANDS = {"sae": cmd_sae}
