"""Fixed cost of one ``interp`` call: wall time of whole commands, warm caches.

Each command runs in a fresh interpreter, as a user's shell would run it. The peer is
the import floor: a bare interpreter that only imports what every model-loading verb
must import (torch, the transformers Llama classes and TransformerLens's bridge
builder). What a verb costs above that floor is the workbench's own overhead.

    python -m benchmarks.overhead [--model smollm2-135m --repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from benchmarks._harness import emit, machine

FLOOR = ("import torch; from transformers import LlamaForCausalLM, PreTrainedTokenizerFast; "
         "from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module")


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if proc.returncode:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}: {proc.stderr.strip()[-300:]}")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1, help="untimed rounds first (0 when caches are known warm)")
    args = ap.parse_args(argv)

    py = sys.executable
    cmds = {
        "help": [py, "-m", "interp", "--help"],
        "models": [py, "-m", "interp", "models", "--json"],
        "attention": [py, "-m", "interp", "attention", "--model", args.model, "--prompt",
                      "The Eiffel Tower is in the city of", "--layer", "0", "--head", "0", "--json"],
        "import_floor": [py, "-c", FLOOR],
    }
    for _ in range(args.warmup):  # warm every cache (dequantized weights, tokenizer, corpus counts)
        for cmd in cmds.values():
            _wall(cmd)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.repeats):
        for name, cmd in cmds.items():
            times[name].append(_wall(cmd))
    rows = {k: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": len(v)}
            for k, v in times.items()}
    floor = rows["import_floor"]["median_s"]
    emit({"benchmark": "overhead", "model": args.model, "machine": machine(), "commands": rows,
          "attention_above_import_floor_s": rows["attention"]["median_s"] - floor,
          "ratios": {"attention_over_import_floor": rows["attention"]["median_s"] / floor}})


if __name__ == "__main__":
    main()
