# The two commands of the README:
#   make explore   set up, then launch the explorer on the embedded model (127.0.0.1:8501)
#   make test      set up, check the import contracts and ruff, then run the whole test suite
#                  (CPU; 26.4 min on a 2-core machine from a fresh clone, set-up included)
VENV ?= .venv
PORT ?= 8501

.PHONY: explore test bench setup clean

setup:
	bash scripts/setup.sh

explore: setup
	$(VENV)/bin/interp app --port $(PORT)

test:
	bash scripts/setup.sh --browser
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q --timeout=900

bench: setup
	$(VENV)/bin/python -m benchmarks.load

clean:
	rm -rf $(VENV) .pytest_cache
