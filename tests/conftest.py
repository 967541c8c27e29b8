"""Shared fixtures: the three tiny architectures (fast, random) and the two embedded models (real).

Models are session-scoped: analyses never modify weights, and loading once keeps the
suite fast on 2 cores.
"""

from __future__ import annotations


import pytest
import torch

from interp.models import load_model

TINY = ["tiny-gpt2", "tiny-llama", "tiny-gemma3"]
EIFFEL = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="session")
def tiny_models():
    return {name: load_model(name, device="cpu") for name in TINY}


@pytest.fixture(params=TINY)
def tiny(request, tiny_models):
    """Each test using this runs once per tiny architecture."""
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def smol():
    """The embedded SmolLM2-135M (dequantized once into the cache dir)."""
    return load_model("smollm2-135m", device="cpu")


@pytest.fixture(scope="session")
def gemma():
    """The embedded Gemma 3 270M (assembled and dequantized once into the cache dir)."""
    return load_model("gemma3-270m", device="cpu")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture
def killed_at_step(monkeypatch):
    """``killed_at_step(i)``: from now on the activation store dies (KeyboardInterrupt, as a kill) when asked
    for batch ``i``; ``killed_at_step(None)`` brings it back. For kill-and-resume tests."""
    from saes.activations import ActivationStore

    real = ActivationStore.batch

    def kill(step):
        if step is None:
            monkeypatch.setattr(ActivationStore, "batch", real)
            return

        def dies(self, i):
            if i == step:
                raise KeyboardInterrupt
            return real(self, i)

        monkeypatch.setattr(ActivationStore, "batch", dies)

    return kill


def news_corpus(folder, n_docs: int) -> str:
    """A local .txt corpus of the first ``n_docs`` BBC News documents in ``folder`` (blank-line separated)."""
    from interp.corpus import documents

    path = folder / "news.txt"
    docs = [d for _, d in zip(range(n_docs), documents("bbc-news"))]
    path.write_text("\n\n".join(d.replace("\n\n", "\n") for d in docs))
    return str(path)


def run_ddp_worker(out, corpus: str, *mode: str, port: int):
    """tests/_sae_ddp_worker.py on two gloo processes under torchrun, training into ``out``; the finished process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={port}",
                           str(root / "tests" / "_sae_ddp_worker.py"), str(out), corpus, *mode],
                          capture_output=True, text=True, env=env, timeout=600, cwd=root)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small offline corpus file (300 BBC News documents) for training tests."""
    return news_corpus(tmp_path_factory.mktemp("corpus"), 300)
