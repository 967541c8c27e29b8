#!/usr/bin/env bash
# circuit-tracer 0.5 pins transformers<=4.57.3 and TransformerLens 3, so it cannot live in the
# workbench's environment. This makes benchmarks/.circuit-tracer-venv with circuit-tracer and its
# dependencies, for running it beside the workbench on the same files:
#   python -m benchmarks.circuit_tracer_compat --transcoders SET   (runs this script when needed)
# A torch already importable by python3 (a CUDA build on a GPU machine) is reused; otherwise the
# CPU build is installed.
set -euo pipefail
cd "$(dirname "$0")"
if python3 -c "import torch" 2>/dev/null; then
  python3 -m venv --system-site-packages .circuit-tracer-venv
else
  python3 -m venv .circuit-tracer-venv
  .circuit-tracer-venv/bin/pip install -q "${CPU_TORCH:-torch==2.13.0}"
fi
# nnsight 0.7 and later moved nnsight.intervention.tracing, which circuit-tracer 0.5 imports.
.circuit-tracer-venv/bin/pip install -q "circuit-tracer==0.5.0" "nnsight==0.6.*"
.circuit-tracer-venv/bin/python -c "import circuit_tracer, transformer_lens, transformers, torch; print('circuit-tracer', circuit_tracer.__version__ if hasattr(circuit_tracer, '__version__') else '0.5.0', '| transformer-lens', transformer_lens.__version__ if hasattr(transformer_lens, '__version__') else '?', '| transformers', transformers.__version__, '| torch', torch.__version__)"
