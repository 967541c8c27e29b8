"""Run under torchrun by tests/test_sae_train.py: train the same tiny SAE on N gloo processes."""

import sys

from interp.models import load_model
from saes.train import TrainConfig, init_distributed, train

if __name__ == "__main__":
    out, corpus = sys.argv[1], sys.argv[2]
    init_distributed()
    model = load_model("tiny-llama", device="cpu")
    cfg = TrainConfig(hook="blocks.1.hook_resid_post", architecture="topk", d_sae=128, k=8, tokens=256 * 8,
                      batch_size=256, seq_len=32, block_rows=32, corpus=corpus, lr=1e-3, log_every=4,
                      checkpoint_every=4)
    train(model, cfg, out)
