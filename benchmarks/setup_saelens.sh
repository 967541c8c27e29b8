#!/usr/bin/env bash
# SAELens pins transformer-lens<4, so it cannot live in the workbench's environment.
# This makes benchmarks/.saelens-venv with the CPU torch and SAELens, for
# `python -m benchmarks.saes --saelens benchmarks/.saelens-venv/bin/python`.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .saelens-venv
.saelens-venv/bin/pip install -q "${CPU_TORCH:-torch==2.13.0}"
.saelens-venv/bin/pip install -q sae-lens
.saelens-venv/bin/python -c "import sae_lens, transformer_lens; print('sae-lens', sae_lens.__version__)"
