"""SAELens's own trainer on exported activation batches, scored on a held-out block at each
token budget. Runs inside the SAELens environment (benchmarks/setup_saelens.sh), never
imported by the workbench; ``benchmarks/sae_efficiency.py`` drives it.

    <saelens-python> benchmarks/_saelens_train.py DIR D_SAE K LR BATCH BUDGETS [SEED]

DIR holds ``train-NNNNNN.safetensors`` (the training activations, in training order) and
``held.safetensors`` (the held-out block), each with one tensor ``x``. BUDGETS is a
comma-separated list of token counts. One run of ``SAETrainer.fit`` with SAELens's defaults
(constant learning rate, no warm-up or decay, Adam 0.9/0.999, no input normalisation; lr_end is
lr / 10 as its runner config sets it, unused by the constant schedule) except
the given lr and batch: with a constant rate, the SAE after N tokens of a long run is the SAE
of an N-token run, so the data feed scores it on the held-out block as each budget passes.
Prints one JSON object.
"""

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

folder, d_sae, k, lr, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
budgets = sorted(int(b) for b in sys.argv[6].split(","))
seed = int(sys.argv[7]) if len(sys.argv) > 7 else 0
held = load_file(str(folder / "held.safetensors"))["x"].float()
shards = sorted(folder.glob("train-*.safetensors"))
torch.manual_seed(seed)
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=held.shape[1], d_sae=d_sae, k=k, dtype="float32", device="cpu"))


@torch.no_grad()
def score() -> dict:
    """L0 and FVU (squared error over the held-out block's total variance) with SAELens's encode/decode."""
    sq, var, l0, fired = 0.0, 0.0, 0.0, torch.zeros(d_sae, dtype=torch.bool)
    mean = held.mean(0)
    for i in range(0, len(held), 4096):
        x = held[i:i + 4096]
        f = sae.encode(x)
        sq += (x - sae.decode(f)).double().pow(2).sum().item()
        var += (x - mean).double().pow(2).sum().item()
        l0 += (f > 0).sum().item()
        fired |= (f > 0).any(0)
    return {"fvu": sq / var, "l0": l0 / len(held), "dead_frac": 1 - fired.float().mean().item()}


points, clock = [], {"train_s": 0.0, "t": 0.0}


def feed():
    """The training batches in order; before handing out the batch after each budget, score the SAE."""
    seen = 0
    clock["t"] = time.perf_counter()
    for shard in shards:
        x = load_file(str(shard))["x"]
        for i in range(0, len(x) - batch + 1, batch):
            if seen in budgets:
                clock["train_s"] += time.perf_counter() - clock["t"]
                points.append({"tokens": seen, "train_seconds": round(clock["train_s"], 2), **score()})
                print(json.dumps({"saelens": points[-1]}), file=sys.stderr, flush=True)
                clock["t"] = time.perf_counter()
            yield x[i:i + batch]
            seen += batch
    raise SystemExit(f"the exported activations hold only {seen} tokens, fewer than {max(budgets)}")


trainer = SAETrainer(SAETrainerConfig(total_training_samples=max(budgets), train_batch_size_samples=batch, lr=lr, lr_end=lr / 10,
                                      device="cpu"), sae, feed())
trainer.fit()
clock["train_s"] += time.perf_counter() - clock["t"]
points.append({"tokens": trainer.n_training_samples, "train_seconds": round(clock["train_s"], 2), **score()})
import sae_lens  # noqa: E402

print(json.dumps({"sae_lens": sae_lens.__version__, "lr": lr, "batch": batch, "seed": seed, "points": points}))
