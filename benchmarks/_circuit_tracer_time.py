"""circuit-tracer's side of benchmarks/graph_peer.py, run by its own environment's Python
(benchmarks/setup_circuit_tracer.sh): load our transcoder set with its own loader and the model with its
nnsight backend, time ``attribute`` on the given tokens at the given batch size and cap, and write the
graph as safetensors (no pickles). Prints one JSON line: seconds (attribute alone), the whole process's
seconds and its peak resident memory.

    python benchmarks/_circuit_tracer_time.py CONFIG_YAML MODEL_DIR TOKENS_JSON BATCH CAP OUT.safetensors
"""

import json
import resource
import sys
import time

T0 = time.perf_counter()

import torch  # noqa: E402
import yaml  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def main() -> None:
    from circuit_tracer import ReplacementModel, attribute
    from circuit_tracer.utils.hf_utils import load_transcoders

    config_path, model_dir, tokens, batch, cap, out = sys.argv[1:7]
    with open(config_path) as f:
        config = yaml.safe_load(f)
    transcoders = load_transcoders(config, device=torch.device("cpu"), lazy_decoder=False)
    model = ReplacementModel.from_pretrained_and_transcoders(model_dir, transcoders, backend="nnsight",
                                                             dtype=torch.float32)
    t0 = time.perf_counter()
    g = attribute(torch.tensor(json.loads(tokens)), model, batch_size=int(batch), max_feature_nodes=int(cap))
    seconds = time.perf_counter() - t0
    targets = g.logit_targets
    ids = targets if torch.is_tensor(targets) else torch.tensor([int(t.vocab_idx) for t in targets])
    save_file({"adjacency": g.adjacency_matrix.float().contiguous(), "active": g.active_features.long().contiguous(),
               "selected": g.selected_features.long().contiguous(), "acts": g.activation_values.float().contiguous(),
               "logit_ids": ids.long().contiguous(), "tokens": torch.as_tensor(g.input_tokens).long().contiguous()},
              out)
    print(json.dumps({"seconds": seconds, "process_seconds": time.perf_counter() - T0,
                      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "active": int(len(g.active_features)), "feature_nodes": int(len(g.selected_features))}))


if __name__ == "__main__":
    main()
