"""SAELens's own TopK training step, timed. Runs inside the SAELens environment
(benchmarks/setup_saelens.sh), never imported by the workbench.

    <saelens-python> benchmarks/_saelens_step.py ACTS.safetensors D_SAE K REPEATS [DEVICE [fp32|bf16]]
prints JSON: the median seconds of one step as SAELens's SAETrainer takes it (forward, loss,
backward, gradient clipping, Adam). ``bf16`` wraps the
forward in bf16 autocast as SAELens's trainer does with ``autocast=True``.
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
device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
bf16 = len(sys.argv) > 6 and sys.argv[6] == "bf16"
x = load_file(path)["x"].to(device)
torch.manual_seed(0)
sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=x.shape[1], d_sae=d_sae, k=k, dtype="float32", device=device))
opt = torch.optim.Adam(sae.parameters(), lr=1e-4)


def sync():
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step(i):
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=bf16 and device.startswith("cuda")):
        out = sae.training_forward_pass(TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None,
                                                       n_training_steps=i, is_logging_step=False))
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)  # as SAELens's SAETrainer does every step
    opt.step()
    opt.zero_grad()


for i in range(3):  # warm-up
    step(i)
times = []
for i in range(repeats):
    sync()
    t0 = time.perf_counter()
    step(i + 3)
    sync()
    times.append(time.perf_counter() - t0)
import sae_lens  # noqa: E402

print(json.dumps({"median_s": statistics.median(times), "runs": repeats, "sae_lens": sae_lens.__version__,
                  "device": device, "bf16": bf16}))
