"""GPU paths give the CPU's answers. Skipped cleanly where no CUDA device exists."""

import pytest
import torch

from interp import direct_logit_attribution, load_model
from interp.metrics import make_task
from interp.circuits.patching import patch_sweep
from interp.knowledge.tracing import trace
from tests.conftest import EIFFEL, TINY

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

COLOSSEUM = "The Colosseum is located in the city of"


@pytest.mark.parametrize("name", TINY)
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


@pytest.mark.parametrize("arch", ["relu", "topk", "batchtopk", "jumprelu"])
def test_sae_forward_and_step_on_cuda_equal_cpu(arch):
    from saes import SAEConfig, make_sae

    torch.manual_seed(0)
    cpu = make_sae(SAEConfig(arch, 32, 256, k=8)).eval()
    gpu = make_sae(SAEConfig(arch, 32, 256, k=8)).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    x = torch.randn(64, 32)
    a, b = cpu(x), gpu(x.cuda())
    torch.testing.assert_close(b.x_hat.cpu(), a.x_hat, atol=1e-4, rtol=1e-4)
    # one bf16-autocast training step, as the trainer takes it, stays finite and close to fp32 on CPU
    cpu.train(), gpu.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        lg = gpu.loss(x.cuda(), 1.0)
    lc = cpu.loss(x, 1.0)
    lg.loss.backward()
    assert torch.isfinite(lg.loss) and lg.mse.item() == pytest.approx(lc.mse.item(), rel=0.05)
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in gpu.parameters())


def test_sae_trainer_on_cuda(tmp_path):
    from interp.corpus import documents
    from saes import load_sae
    from saes.train import TrainConfig, train

    model = load_model("tiny-llama", device="cuda")
    path = tmp_path / "news.txt"
    path.write_text("\n\n".join(d for _, d in zip(range(200), documents("bbc-news"))))
    cfg = TrainConfig(hook="blocks.1.hook_resid_post", d_sae=128, k=8, tokens=256 * 8, batch_size=256, seq_len=32,
                      block_rows=32, corpus=str(path), lr=1e-3, log_every=4)
    res = train(model, cfg, tmp_path / "sae")
    assert res.final["fvu"] < 1.0 and str(res.sae.W_enc.device).startswith("cuda")
    loaded = load_sae(tmp_path / "sae")  # written from the GPU, read on the CPU
    x = torch.randn(16, model.cfg.d_model)
    res.sae.eval()
    torch.testing.assert_close(loaded(x).x_hat, res.sae(x.cuda()).x_hat.float().cpu(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "relu", "jumprelu"])
def test_cuda_graph_training_equals_the_eager_trainer(arch, tmp_path):
    """The trainer's captured step (saes.step.TrainStep) against its eager step on the same run: the
    same weights after warm-up, capture, AuxK switching on mid-run (a short dead window) and the
    learning-rate schedule. Tolerance only for the capturable Adam's tensor learning rate."""
    from dataclasses import replace

    from interp.corpus import documents
    from saes.train import TrainConfig, train

    model = load_model("tiny-llama", device="cuda")
    path = tmp_path / "news.txt"
    path.write_text("\n\n".join(d for _, d in zip(range(200), documents("bbc-news"))))
    cfg = TrainConfig(hook="blocks.1.hook_resid_post", architecture=arch, d_sae=128, k=8, tokens=256 * 24,
                      batch_size=256, seq_len=32, block_rows=64, corpus=str(path), lr=1e-3, log_every=4,
                      dead_tokens=256, init_l0=8 if arch == "jumprelu" else 0)
    graphed = train(model, cfg, tmp_path / "graphed").sae
    eager = train(model, replace(cfg, cuda_graphs=False), tmp_path / "eager").sae
    for (name, a), (_, b) in zip(graphed.state_dict().items(), eager.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{arch} {name}: {m}")


def _split_map(model, first: str, rest: str) -> dict:
    """Embeddings, the first half of the blocks and the unembedding on ``first``; the rest on ``rest``."""
    layers = model.cfg.n_layers
    prefix = "transformer.h" if model.original_model.config.model_type == "gpt2" else "model.layers"
    blocks = {f"{prefix}.{i}": (first if i < layers // 2 else rest) for i in range(layers)}
    named = dict(model.original_model.named_modules())
    others = {n: first for n in ("model.embed_tokens", "model.rotary_emb", "transformer.wte", "transformer.wpe",
                                 "lm_head") if n in named}
    norms = {n: rest for n in ("model.norm", "transformer.ln_f") if n in named}
    return {**others, **blocks, **norms}


@pytest.mark.parametrize("name", TINY)
def test_a_model_split_across_cuda_and_cpu_gives_one_devices_values(name, tmp_path):
    from saes.activations import ActivationStore

    one = load_model(name, device="cpu")
    split = load_model(name, device_map=_split_map(one, 0, "cpu"))
    devices = {str(p.device) for p in split.original_model.parameters()}
    assert devices == {"cpu", "cuda:0"} and str(split.cfg.device) == "cuda:0"
    a = patch_sweep(one, make_task(one, EIFFEL, COLOSSEUM, " Paris", " Rome"), "resid_pre")
    b = patch_sweep(split, make_task(split, EIFFEL, COLOSSEUM, " Paris", " Rome"), "resid_pre")
    assert torch.allclose(a.values, b.values.cpu(), atol=1e-3)
    ta = trace(one, EIFFEL, "The Eiffel Tower", " Paris", samples=3)
    tb = trace(split, EIFFEL, "The Eiffel Tower", " Paris", samples=3)
    for kind in ta.scores:
        assert torch.allclose(ta.scores[kind], tb.scores[kind], atol=1e-4)
    hook = f"blocks.{one.cfg.n_layers - 1}.hook_resid_post"
    kw = dict(corpus="bbc-news", batch_size=64, seq_len=16, block_rows=8, device="cpu")
    ha = ActivationStore(one, [hook], **kw).batch(0)[hook]
    hb = ActivationStore(split, [hook], **kw).batch(0)[hook]
    torch.testing.assert_close(ha, hb.cpu(), atol=1e-4, rtol=1e-4)
