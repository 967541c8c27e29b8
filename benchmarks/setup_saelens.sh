#!/usr/bin/env bash
# SAELens pins transformer-lens<4, so it cannot live in the workbench's environment.
# This makes benchmarks/.saelens-venv with SAELens and its dependencies (TransformerLens 3 and
# wandb, which SAELens imports at module level), for
#   python -m benchmarks.saes --saelens benchmarks/.saelens-venv/bin/python [--device cuda]
# A torch already importable by python3 (a CUDA build on a GPU machine) is reused, so the
# comparison runs on the same GPU; otherwise the CPU build is installed.
set -euo pipefail
cd "$(dirname "$0")"
if python3 -c "import torch" 2>/dev/null; then
  python3 -m venv --system-site-packages .saelens-venv
else
  python3 -m venv .saelens-venv
  .saelens-venv/bin/pip install -q "${CPU_TORCH:-torch==2.13.0}"
fi
.saelens-venv/bin/pip install -q sae-lens
.saelens-venv/bin/python -c "import sae_lens, transformer_lens, wandb, torch; print('sae-lens', sae_lens.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
