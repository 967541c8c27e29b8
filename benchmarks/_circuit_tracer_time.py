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
from _circuit_tracer_side import replacement_model, save_graph  # noqa: E402  (this script's folder is on the path)


def main() -> None:
    from circuit_tracer import attribute

    config_path, model_dir, tokens, batch, cap, out = sys.argv[1:7]
    model = replacement_model(config_path, model_dir)
    t0 = time.perf_counter()
    g = attribute(torch.tensor(json.loads(tokens)), model, batch_size=int(batch), max_feature_nodes=int(cap))
    seconds = time.perf_counter() - t0
    save_graph(g, out)
    print(json.dumps({"seconds": seconds, "process_seconds": time.perf_counter() - T0,
                      "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                      "active": int(len(g.active_features)), "feature_nodes": int(len(g.selected_features))}))


if __name__ == "__main__":
    main()
