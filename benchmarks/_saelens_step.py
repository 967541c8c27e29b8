"""SAELens's own TopK training step, timed. Runs inside the SAELens environment
(benchmarks/setup_saelens.sh), never imported by the workbench.

    <saelens-python> benchmarks/_saelens_step.py ACTS.safetensors D_SAE K REPEATS
prints JSON: the median seconds of one step (forward, loss, backward, Adam).
"""

import json
import statistics
import sys
import time

import torch
from safetensors.torch import load_file
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.saes.sae import TrainStepInput

path, d_sae, k, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x = load_file(path)["x"]
torch.manual_seed(0)
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=x.shape[1], d_sae=d_sae, k=k, dtype="float32", device="cpu"))
opt = torch.optim.Adam(sae.parameters(), lr=1e-4)


def step(i):
    out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                   n_training_steps=i, is_logging_step=False))
    opt.zero_grad(set_to_none=True)
    out.loss.backward()
    opt.step()


step(0)  # warm-up
times = []
for i in range(repeats):
    t0 = time.perf_counter()
    step(i + 1)
    times.append(time.perf_counter() - t0)
import sae_lens  # noqa: E402

print(json.dumps({"median_s": statistics.median(times), "runs": repeats, "sae_lens": sae_lens.__version__}))
