"""circuit-tracer's side of benchmarks/circuit_tracer_compat.py, run by its own environment's Python
(benchmarks/setup_circuit_tracer.sh): load our transcoder set with its own loader, unmodified, compute
its graph of the given tokens, and serve our graph folder with its frontend's request handler on
127.0.0.1, checking our graph JSON against its frontend's schema. Writes safetensors (no pickles)
and prints one JSON line.

    python benchmarks/_circuit_tracer_side.py CONFIG_YAML MODEL_DIR TOKENS_JSON OUT.safetensors GRAPH_DIR SLUG
"""

import functools
import json
import socketserver
import sys
import threading
import time
import urllib.request

import torch
import yaml
from safetensors.torch import save_file


def replacement_model(config_path: str, model_dir: str):
    """circuit-tracer's replacement model of the cached model with our set, read by its own loader."""
    from circuit_tracer import ReplacementModel
    from circuit_tracer.utils.hf_utils import load_transcoders

    with open(config_path) as f:
        config = yaml.safe_load(f)
    transcoders = load_transcoders(config, device=torch.device("cpu"), lazy_decoder=False)
    return ReplacementModel.from_pretrained_and_transcoders(model_dir, transcoders, backend="nnsight",
                                                            dtype=torch.float32)


def save_graph(g, out: str) -> None:
    """Its graph as safetensors: adjacency, active and selected features, activations, logit ids, tokens."""
    targets = g.logit_targets
    ids = targets if torch.is_tensor(targets) else torch.tensor([int(t.vocab_idx) for t in targets])
    save_file({"adjacency": g.adjacency_matrix.float().contiguous(), "active": g.active_features.long().contiguous(),
               "selected": g.selected_features.long().contiguous(), "acts": g.activation_values.float().contiguous(),
               "logit_ids": ids.long().contiguous(), "tokens": torch.as_tensor(g.input_tokens).long().contiguous()},
              out)


def main() -> None:
    from circuit_tracer import attribute
    from circuit_tracer.frontend.graph_models import Model
    from circuit_tracer.frontend.local_server import DEFAULT_FRONTEND_DIR, CircuitGraphHandler

    config_path, model_dir, tokens, out, graph_dir, slug = sys.argv[1:7]
    t0 = time.perf_counter()
    g = attribute(torch.tensor(json.loads(tokens)), replacement_model(config_path, model_dir), batch_size=32,
                  max_feature_nodes=None)
    seconds = time.perf_counter() - t0
    save_graph(g, out)

    # Our graph JSON through its frontend's schema, and its server on 127.0.0.1 (its serve() binds every interface).
    with open(f"{graph_dir}/{slug}.json") as f:
        Model(**json.load(f))
    handler = functools.partial(CircuitGraphHandler, frontend_dir=DEFAULT_FRONTEND_DIR, data_dir=graph_dir)
    socketserver.TCPServer.allow_reuse_address = True
    with socketserver.TCPServer(("127.0.0.1", 0), handler) as httpd:
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{httpd.server_address[1]}"
        served = {}
        for path in ("/", "/data/graph-metadata.json", f"/graph_data/{slug}.json"):
            with urllib.request.urlopen(base + path, timeout=30) as r:
                body = r.read()
                served[path] = r.status
                if path.endswith(".json"):
                    import gzip

                    doc = json.loads(gzip.decompress(body) if r.headers.get("Content-Encoding") == "gzip" else body)
                    if path.startswith("/graph_data/"):
                        Model(**doc)
                    else:
                        assert any(m["slug"] == slug for m in doc["graphs"])
        httpd.shutdown()
    print(json.dumps({"seconds": seconds, "active": int(len(g.active_features)), "served": served,
                      "schema_accepts_our_json": True}))


if __name__ == "__main__":
    main()
