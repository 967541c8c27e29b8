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


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small offline corpus file (300 BBC News documents) for training tests."""
    from interp.corpus import documents

    path = tmp_path_factory.mktemp("corpus") / "news.txt"
    docs = [d for _, d in zip(range(300), documents("bbc-news"))]
    path.write_text("\n\n".join(d.replace("\n\n", "\n") for d in docs))
    return str(path)
