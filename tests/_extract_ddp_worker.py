"""Run under torchrun by tests/test_features.py: extract one tiny SAE's features on N gloo processes."""

import sys

from interp.distributed import init_distributed
from interp.models import load_model
from saes.features.extract import ExtractConfig, extract_features

if __name__ == "__main__":
    sae, out, corpus, ctx = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    init_distributed("cpu")
    model = load_model("tiny-llama", device="cpu")
    extract_features(model, [sae], out, ExtractConfig(corpus=corpus, ctx=ctx, contexts_per_shard=8, model_batch=3,
                                                      tokens=1500, max_norm_ratio=0.0))
