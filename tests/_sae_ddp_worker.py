"""Run under torchrun by tests/test_sae_train.py and tests/test_transcoder.py: train the same tiny SAE (or,
with a third argument ``transcoders``, the same tiny transcoder set for every layer, or ``clt`` one
cross-layer transcoder over them) on N gloo processes."""

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
    if sys.argv[3:] == ["transcoders"]:
        cfg.hook, cfg.hook_out, cfg.layers, cfg.max_norm_ratio = ("blocks.{l}.hook_resid_mid", "blocks.{l}.hook_mlp_out",
                                                                  [0, 1, 2], 0.0)
    if sys.argv[3:] == ["clt"]:
        cfg.hook, cfg.hook_out, cfg.layers, cfg.max_norm_ratio = ("blocks.{l}.hook_resid_mid", "blocks.{l}.hook_mlp_out",
                                                                  [0, 1, 2], 0.0)
        cfg.clt, cfg.architecture, cfg.d_sae, cfg.init_l0 = True, "jumprelu", 32, 4.0
    train(model, cfg, out)
