"""circuit-tracer reads our files as written (issue 43): the workbench writes a transcoder set in
circuit-tracer's layout; circuit-tracer 0.5, in its own environment, loads it with its own loader,
unmodified, and computes its graph of the same tokens; the two graphs are compared (active features,
activations, edges relative to each row's largest); and circuit-tracer's frontend server, on
127.0.0.1, serves our graph JSON and the folder's graph-metadata.json, its schema accepting them.

    python -m benchmarks.circuit_tracer_compat --transcoders SET [--prompt P]

(the first run makes circuit-tracer's environment with benchmarks/setup_circuit_tracer.sh).

The set must be JumpReLU or ReLU: circuit-tracer 0.5's loader has no TopK (docs/transcoders_and_graphs.md).
Both graphs use circuit-tracer's conventions: a special token in front of a prompt that starts with
none (it prepends one to SmolLM2's prompts), and position 0's error nodes zeroed. Offline: the model
comes from the workbench's cache, in the Hugging Face layout transformers 4.57 reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks._harness import emit, machine

PROMPT = "The Eiffel Tower is in the city of"
HERE = Path(__file__).resolve().parent


def _model_dir(model, name: str, out: Path) -> Path:
    """The cached model as transformers 4.57 reads it: its config with ``architectures`` and a top-level
    ``rope_theta`` (transformers 5 writes ``rope_parameters``, which 4.57 ignores for its default 10,000),
    the weights linked, the tokenizer saved as a plain fast tokenizer."""
    from interp.cache import cache_dir

    src = cache_dir() / "models" / name
    if not (src / "model.safetensors").exists():
        raise SystemExit(f"interp: error: {src} has no cached weights; run `interp models` or load {name} once")
    config = json.loads((src / "config.json").read_text())
    config["architectures"] = config.get("architectures") or [type(model.original_model).__name__
                                                              if hasattr(model, "original_model") else "LlamaForCausalLM"]
    if "rope_parameters" in config and "rope_theta" not in config:
        config["rope_theta"] = config["rope_parameters"].get("rope_theta", 10000.0)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(config, indent=1))
    (out / "model.safetensors").symlink_to(src / "model.safetensors")
    model.tokenizer.save_pretrained(str(out))
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    return out


def circuit_tracer_python(python: str | None = None) -> str:
    """circuit-tracer's environment's Python, made with benchmarks/setup_circuit_tracer.sh when it is missing
    (one command from a fresh clone)."""
    default = str(HERE / ".circuit-tracer-venv" / "bin" / "python")
    python = python or default
    if not Path(python).exists() and python == default:
        print("circuit-tracer's environment is missing: running benchmarks/setup_circuit_tracer.sh", file=sys.stderr)
        subprocess.run(["bash", str(HERE / "setup_circuit_tracer.sh")], check=True)
    if not Path(python).exists():
        raise SystemExit(f"interp: error: {python} is missing; run bash benchmarks/setup_circuit_tracer.sh")
    return python


def special_prefix(model, prompt: str) -> str:
    """The special token circuit-tracer puts in front of a prompt that starts with none (its
    ensure_tokenized), as text; "" where the prompt starts with one."""
    ids = model.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    tok = model.tokenizer
    if ids[0] in set(tok.all_special_ids):
        return ""
    first = next(t for t in (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, *tok.all_special_ids) if t)
    return tok.convert_ids_to_tokens(first)


def main(argv: list[str] | None = None) -> None:
    from interp.circuits.graph import attribution_graph
    from interp.circuits.graph_json import add_to_index
    from interp.models import load_model
    from saes.transcoder import load_set, save_circuit_tracer

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--transcoders", required=True, help="a JumpReLU or ReLU transcoder set of the workbench's")
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--python", default=None, help="circuit-tracer's environment (benchmarks/setup_circuit_tracer.sh)")
    args = ap.parse_args(argv)
    args.python = circuit_tracer_python(args.python)
    tset = load_set(args.transcoders)
    arch = next(iter(tset.layers.values())).cfg.architecture
    if arch == "topk":
        raise SystemExit("interp: error: circuit-tracer 0.5's loader has no TopK (it would read this set as ReLU); "
                         "give a JumpReLU or ReLU set (interp sae train --transcoder --arch jumprelu)")
    model = load_model(args.model)
    prefix = special_prefix(model, args.prompt)  # circuit-tracer prepends a special token, as its ensure_tokenized does
    with tempfile.TemporaryDirectory(prefix="ct-compare-") as tmp:
        tmp = Path(tmp)
        save_circuit_tracer(tset, tmp / "set")  # the files as the workbench writes them
        graph = attribution_graph(model, tset, prefix + args.prompt, max_feature_nodes=10**9,
                                  first_position_errors="zero", label_features=False)
        (tmp / "graphs").mkdir()
        doc = graph.to_json(slug="ours")
        (tmp / "graphs" / "ours.json").write_text(json.dumps(doc))
        add_to_index(tmp / "graphs" / "ours.json", doc)
        side = subprocess.run([args.python, str(HERE / "_circuit_tracer_side.py"), str(tmp / "set" / "config.yaml"),
                               str(_model_dir(model, args.model, tmp / "model")), json.dumps(graph.tokens),
                               str(tmp / "ct.safetensors"), str(tmp / "graphs"), "ours"],
                              capture_output=True, text=True, cwd=tmp, timeout=3600)
        if side.returncode:
            raise SystemExit("interp: error: circuit-tracer failed: " + side.stderr.strip().splitlines()[-1])
        report = json.loads(side.stdout.strip().splitlines()[-1])
        from safetensors.numpy import load_file

        ct = load_file(str(tmp / "ct.safetensors"))
    out = {"benchmark": "circuit_tracer_compat", "machine": machine(), "model": args.model, "transcoders": args.transcoders,
           "prompt": args.prompt, "tokens": graph.tokens, "circuit_tracer": report,
           "tokens_equal": graph.tokens == ct["tokens"].tolist(), **_compare(graph, ct)}
    emit(out)


def _compare(graph, ct: dict) -> dict:
    """Active features, activations and edges, node for node (circuit-tracer's order: features, error
    nodes layer by layer, tokens, logits), each edge's difference relative to its row's largest |edge|."""
    selected = ct["active"][ct["selected"]]
    theirs = {tuple(f): i for i, f in enumerate(selected.tolist())}
    ours = {tuple(f): i for i, f in enumerate(graph.features.tolist())}
    common = sorted(set(ours) & set(theirs))
    F_ct, rest = len(selected), graph.n_nodes - graph.n_features
    o = [ours[k] for k in common] + list(range(graph.n_features, graph.n_nodes))
    c = [theirs[k] for k in common] + list(range(F_ct, F_ct + rest))
    A = graph.adjacency[np.ix_(o, o)].astype(np.float64)
    B = ct["adjacency"][np.ix_(c, c)].astype(np.float64)
    scale = np.abs(A).max(1, keepdims=True)
    rel = np.abs(A - B) / np.where(scale > 0, scale, 1.0)
    acts = ct["acts"][ct["selected"]] if len(ct["acts"]) == len(ct["active"]) else ct["acts"]
    return {"active_features": {"ours": len(ours), "circuit_tracer": len(theirs), "common": len(common)},
            "logits_equal": graph.logit_tokens == ct["logit_ids"].tolist(),
            "max_activation_difference": float(max((abs(float(graph.activations[ours[k]]) - float(acts[theirs[k]]))
                                                    for k in common), default=0.0)),
            "edges": {"ours": int((A != 0).sum()), "circuit_tracer": int((B != 0).sum()),
                      "common": int(((A != 0) & (B != 0)).sum())},
            "max_edge_difference": float(np.abs(A - B).max()), "max_edge_difference_of_row_scale": float(rel.max())}


if __name__ == "__main__":
    sys.exit(main())
