"""SAE token efficiency against SAELens: the same cached activations, the same architecture and width,
held-out FVU after each token budget.

Both trainers read identical activations: ``blocks.{layer}.hook_resid_post`` of the model over the
default corpus, harvested once into ``--cache`` by the workbench's activation store, in the order the
workbench's trainer reads them. The batches are exported once for SAELens, which runs in its own
environment (``--saelens PYTHON``, see ``benchmarks/setup_saelens.sh``). Every SAE is scored on the
block after the longest run's last one, which no run trained on: FVU (squared error over the block's
total variance), L0 and the fraction of latents that never fire there.

- **Workbench**: one run per budget (its schedule, warm-up and decay, is laid over the run's length),
  at each learning rate of ``--lrs`` (``auto``: the default, 2e-4 · sqrt(2^14 / d_sae)).
- **SAELens**: one ``SAETrainer.fit`` per learning rate (its default schedule is constant, so the
  SAE after N tokens is the N-token run's), with SAELens's defaults otherwise. ``--saelens-lrs``
  lists the rates: ``default`` is SAELens's own (3e-4); ``auto`` matches the workbench's.

The batch is the same for both (``--batch``, 4096 = both trainers' default).

    python -m benchmarks.sae_efficiency --saelens benchmarks/.saelens-venv/bin/python \\
        [--d-sae 2304 --k 32 --budgets 200000,1000000,2000000 --lrs auto,2e-4 --saelens-lrs default,auto
         --html FIGURE.html]
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._harness import emit, machine

SAELENS_DEFAULT_LR = 3e-4  # SAETrainerConfig.lr


def _lr(spec: str, d_sae: int) -> float:
    from saes.train import default_lr

    if spec == "auto":
        return default_lr(d_sae)
    if spec == "default":
        return SAELENS_DEFAULT_LR
    return float(spec)


def figure(result: dict):
    """Held-out FVU against training tokens, one line per trainer and learning rate."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for run in result["runs"]:
        pts = run["points"]
        fig.add_trace(go.Scatter(x=[p["tokens"] for p in pts], y=[p["fvu"] for p in pts], mode="lines+markers",
                                 name=f"{run['trainer']} lr {run['lr']:.2g} ({run['lr_setting']})",
                                 line={"dash": "solid" if run["trainer"] == "workbench" else "dot"},
                                 customdata=[p["dead_frac"] for p in pts],
                                 hovertemplate="%{x:,} tokens: FVU %{y:.3f}, dead %{customdata:.0%}<extra></extra>"))
    fig.update_layout(title=f"TopK-{result['k']} SAE, {result['d_sae']} latents, {result['hook']}: held-out FVU",
                      xaxis_title="training tokens", yaxis_title="FVU (held out)", template="plotly_white")
    return fig


def export(store, hook: str, blocks: int, held_block: int, folder: Path) -> None:
    """The first ``blocks`` blocks of training batches, and the held-out block, as safetensors (``x``)."""
    from safetensors.torch import save_file

    from interp.cache import atomic_path
    from interp.progress import progress

    folder.mkdir(parents=True, exist_ok=True)
    used = store.batches_per_block * store.batch_size
    jobs = [(f"train-{b:06d}.safetensors", b, used) for b in range(blocks)]
    jobs.append(("held.safetensors", held_block, None))
    for name, b, n in progress(jobs, desc="activations", unit="block"):
        path = folder / name
        if path.exists():
            continue
        x = store.block(b)[hook]
        with atomic_path(path) as tmp:
            save_file({"x": x[:n].contiguous()}, str(tmp))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--layer", type=int, default=15)
    ap.add_argument("--d-sae", type=int, default=2304)
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4096)
    ap.add_argument("--budgets", default="200000,1000000,2000000", help="training tokens, comma-separated")
    ap.add_argument("--lrs", default="auto,2e-4", help="workbench learning rates (auto: its default from d_sae)")
    ap.add_argument("--saelens", help="python of an environment with SAELens (benchmarks/setup_saelens.sh)")
    ap.add_argument("--saelens-lrs", default="default,auto",
                    help="SAELens learning rates (default: SAELens's own 3e-4; auto: the workbench's)")
    ap.add_argument("--cache", default="benchmarks/.sae-activations", help="activation shards (shared)")
    ap.add_argument("--out", default="benchmarks/.sae-efficiency", help="exported batches and trained SAEs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--html", help="write the FVU-against-tokens figure here")
    args = ap.parse_args(argv)

    from interp.models import load_model
    from saes.activations import ActivationStore
    from saes.evaluate import reconstruction_metrics
    from saes.train import TrainConfig, train

    model = load_model(args.model)
    hook = f"blocks.{args.layer}.hook_resid_post"
    steps = {b: max(1, int(b) // args.batch) for b in args.budgets.split(",")}  # budget -> steps
    budgets = sorted({s * args.batch for s in steps.values()})
    base = dict(hook=hook, architecture="topk", d_sae=args.d_sae, k=args.k, batch_size=args.batch,
                activation_cache=args.cache, seed=args.seed)
    probe = TrainConfig(**base)
    store = ActivationStore(model, [hook], None, args.batch, probe.seq_len, probe.resolved_block_rows(), seed=args.seed,
                            cache_dir=args.cache, max_norm_ratio=probe.max_norm_ratio)
    longest = max(budgets) // args.batch
    blocks = math.ceil(longest / store.batches_per_block)
    held = store.block(blocks)[hook]  # the block after the longest run's last
    result: dict = {"benchmark": "sae_efficiency", "machine": machine(), "model": args.model, "hook": hook,
                    "architecture": "topk", "d_sae": args.d_sae, "k": args.k, "batch": args.batch,
                    "budgets": budgets, "held_out": {"block": blocks, "tokens": len(held)}, "runs": []}
    out = Path(args.out)
    t0 = time.perf_counter()

    for spec in args.lrs.split(","):
        lr = _lr(spec, args.d_sae)
        run = {"trainer": "workbench", "lr_setting": spec, "lr": lr, "points": []}
        for b in budgets:
            cfg = TrainConfig(**base, tokens=b, lr=lr)
            res = train(model, cfg, out / f"workbench-lr{lr:.3g}-{b}")
            point = {"tokens": res.tokens, "train_seconds": round(res.seconds, 2),
                     **{k: v for k, v in reconstruction_metrics(res.sae, held).items()
                        if k in ("fvu", "l0", "dead_frac")}}
            run["points"].append(point)
            print(json.dumps({"workbench": lr, **point}), file=sys.stderr, flush=True)
        result["runs"].append(run)

    if args.saelens:
        folder = out / "exported"
        export(store, hook, blocks, blocks, folder)
        for spec in args.saelens_lrs.split(","):
            lr = _lr(spec, args.d_sae)
            proc = subprocess.run([args.saelens, str(Path(__file__).with_name("_saelens_train.py")), str(folder),
                                   str(args.d_sae), str(args.k), repr(lr), str(args.batch),
                                   ",".join(map(str, budgets)), str(args.seed)],
                                  stdout=subprocess.PIPE, text=True)
            if proc.returncode:
                raise SystemExit(f"SAELens run failed (exit {proc.returncode})")
            theirs = json.loads(proc.stdout.strip().splitlines()[-1])
            result["runs"].append({"trainer": "saelens", "lr_setting": spec, **theirs})
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.html:
        figure(result).write_html(args.html, include_plotlyjs=True)  # offline: no CDN
        result["html"] = args.html
    emit(result)


if __name__ == "__main__":
    main()
