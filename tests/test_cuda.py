"""GPU paths give the CPU's answers. Skipped cleanly where no CUDA device exists."""

import pytest
import torch

from interp import direct_logit_attribution, load_model
from interp.metrics import make_task
from interp.patching import patch_sweep
from interp.tracing import trace
from tests.conftest import EIFFEL

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

COLOSSEUM = "The Colosseum is located in the city of"


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_patching_and_tracing_on_cuda_equal_cpu(name):
    cpu, gpu = load_model(name, device="cpu"), load_model(name, device="cuda")
    assert str(gpu.cfg.device).startswith("cuda")
    for site in ("resid_pre", "head_out", "k"):
        a = patch_sweep(cpu, make_task(cpu, EIFFEL, COLOSSEUM, " Paris", " Rome"), site)
        b = patch_sweep(gpu, make_task(gpu, EIFFEL, COLOSSEUM, " Paris", " Rome"), site)
        assert torch.allclose(a.values, b.values, atol=1e-3)
    ta = trace(cpu, EIFFEL, "The Eiffel Tower", " Paris", samples=3)
    tb = trace(gpu, EIFFEL, "The Eiffel Tower", " Paris", samples=3)
    for kind in ta.scores:
        assert torch.allclose(ta.scores[kind], tb.scores[kind], atol=1e-4)
    da = direct_logit_attribution(cpu, EIFFEL, " Paris", " Rome")
    db = direct_logit_attribution(gpu, EIFFEL, " Paris", " Rome")
    assert db.total == pytest.approx(db.logit_diff, abs=1e-3) and torch.allclose(da.heads, db.heads, atol=1e-3)
