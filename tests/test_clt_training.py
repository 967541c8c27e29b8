"""Cross-layer transcoders trained here (saes.clt_training through saes.train): the training forward against
the CLT's own naive formula, the per-layer thresholds' gradient against the per-layer SAE's, kill-and-resume,
two gloo processes against one, the files in both layouts, and the CLI's refusals."""

import pytest
import torch

from interp.errors import InterpError
from saes.clt import load_clt, save_circuit_tracer_clt, save_gemma_scope_clt
from saes.clt_training import TrainableCLT, clt_parameter_count
from saes.jumprelu import jump_relu
from saes.train import TrainConfig, train
from saes.transcoder import CLTSet, load_set

IN, OUT = "blocks.{l}.hook_resid_mid", "blocks.{l}.hook_mlp_out"


def _random(arch: str, skip: bool = True, seed: int = 0) -> TrainableCLT:
    g = torch.Generator().manual_seed(seed)
    L, d, F = 3, 8, 12
    m = TrainableCLT(L, d, F, arch, k=3, skip=skip)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        m.clt.log_threshold.copy_((torch.rand(L, F, generator=g) * 0.3 + 0.05).log())
        m.input_scale.copy_(torch.rand(L, generator=g) + 0.5)
        m.output_scale.copy_(torch.rand(L, generator=g) + 0.5)
    return m


@pytest.mark.parametrize("arch,skip", [("jumprelu", True), ("topk", True), ("jumprelu", False)])
def test_the_training_forward_folds_to_the_clts_naive_formula(arch, skip):
    m = _random(arch, skip)
    x = torch.randn(40, 3, 8, generator=torch.Generator().manual_seed(1))
    out = m(x)
    folded = m.folded()
    want = folded.reconstruct({layer: x[:, layer] for layer in range(3)})  # the loop over i ≤ l, in raw units
    for layer in range(3):
        torch.testing.assert_close(out.x_hat[:, layer], want[layer], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(out.feature_acts[:, layer], folded.encode(layer, x[:, layer]), rtol=1e-5, atol=1e-5)
    if arch == "topk":
        assert ((out.feature_acts > 0).sum(-1) <= 3).all()
    assert clt_parameter_count(3, 8, 12, skip) == sum(p.numel() for p in folded.parameters())


def test_auxk_is_each_layers_dead_latents_reconstructing_its_own_residual():
    """The batched AuxK against a loop over layers and tokens: the top dead latents of each layer (ReLU'd)
    decode through their own-layer decoders; a layer with none dead adds nothing."""
    from saes.clt_training import AUX_COEFFICIENT, AUX_K

    m = _random("topk").double()
    g = torch.Generator().manual_seed(2)
    pre = torch.randn(6, 3, 12, generator=g, dtype=torch.float64)
    resid = torch.randn(6, 3, 8, generator=g, dtype=torch.float64)
    dead = torch.rand(3, 12, generator=g) < 0.5
    dead[1] = False
    want = 0.0
    for layer in range(3):
        if not dead[layer].any():
            continue
        for b in range(6):
            chosen = sorted(((pre[b, layer, j].item(), j) for j in range(12) if dead[layer, j]), reverse=True)
            r = resid[b, layer].clone()
            for v, j in chosen[:AUX_K]:
                r -= max(v, 0.0) * m.clt.W_dec[layer][j, 0]
            want += r.pow(2).sum().item() / 6
    assert m._aux(resid, pre, dead).item() == pytest.approx(AUX_COEFFICIENT * want, rel=1e-12)


def test_per_layer_thresholds_get_each_layers_own_gradient():
    g = torch.Generator().manual_seed(2)
    pre = torch.randn(3, 50, 7, generator=g)
    theta = (torch.rand(3, 1, 7, generator=g) * 0.5).requires_grad_()
    (jump_relu(pre, theta, 0.5) * torch.arange(7.0)).sum().backward()
    for layer in range(3):  # the per-layer SAE's path: pre [batch, F] against θ [F]
        t = theta.detach()[layer, 0].clone().requires_grad_()
        (jump_relu(pre[layer], t, 0.5) * torch.arange(7.0)).sum().backward()
        torch.testing.assert_close(theta.grad[layer, 0], t.grad)


def _cfg(corpus, **kw):
    base = dict(hook=IN, hook_out=OUT, layers=[0, 1, 2], clt=True, architecture="jumprelu", d_sae=32, k=4,
                init_l0=4.0, tokens=128 * 12, batch_size=128, seq_len=32, block_rows=16, corpus=corpus, lr=1e-3,
                log_every=4, checkpoint_every=4, max_norm_ratio=0.0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_a_killed_clt_job_resumes_bit_exact_and_its_files_round_trip(tiny_models, corpus, tmp_path, killed_at_step,
                                                                      name):
    from interp.architectures import architecture

    model = tiny_models[name]
    hook = architecture(model).transcoder_input  # Gemma: the pre-feedforward norm's output
    cfg = _cfg(corpus, hook=hook)
    whole = train(model, cfg, tmp_path / "whole")
    killed_at_step(6)
    with pytest.raises(KeyboardInterrupt):
        train(model, cfg, tmp_path / "killed")
    killed_at_step(None)
    resumed = train(model, cfg, tmp_path / "killed")
    assert resumed.resumed_from == 4
    for name, p in whole.sae.state_dict().items():
        assert torch.equal(p, resumed.sae.state_dict()[name]), name
    assert sorted(whole.finals) == [0, 1, 2] and all(0 < f["fvu"] < 2 for f in whole.finals.values())
    finals = list(whole.finals.values())  # each layer's own L0 and dead share, which pool to the run's
    assert not any(k.endswith("_per_layer") for f in finals for k in f)
    assert sum(f["l0"] for f in finals) / 3 == pytest.approx(whole.final["l0"], rel=1e-5)
    assert sum(f["dead_frac"] for f in finals) / 3 == pytest.approx(whole.final["dead_frac"], abs=1e-6)
    tset = load_set(tmp_path / "whole")  # circuit-tracer's CLT layout, as the trainer writes it
    assert isinstance(tset, CLTSet) and sorted(tset.layers) == [0, 1, 2]
    assert tset.input_hook(1) == hook.format(l=1) and tset.clt.architecture == "jumprelu"
    folded = whole.sae.folded()
    for a, b in ((tset.clt, folded), (load_clt(save_gemma_scope_clt(tset.clt, tmp_path / "gs")), folded),
                 (load_clt(save_circuit_tracer_clt(tset.clt, tmp_path / "ct")), folded)):
        for name, p in b.state_dict().items():
            torch.testing.assert_close(a.state_dict()[name], p, rtol=1e-6, atol=1e-7, msg=name)
    with pytest.raises(InterpError, match="different run"):  # a resume with other options
        train(model, _cfg(corpus, hook=hook, d_sae=16), tmp_path / "killed")


def test_a_topk_clt_keeps_unit_decoders_and_reads_back_as_topk(tiny_models, corpus, tmp_path):
    res = train(tiny_models["tiny-llama"], _cfg(corpus, architecture="topk", tokens=128 * 4), tmp_path / "t")
    for w in res.sae.clt.W_dec:  # each feature's decoders into every layer it writes, as one unit vector
        torch.testing.assert_close(w.detach().flatten(1).norm(dim=1), torch.ones(32), rtol=1e-5, atol=1e-5)
    clt = load_set(tmp_path / "t").clt
    assert clt.architecture == "topk" and clt.k == 4
    x = torch.randn(10, 64)
    assert ((clt.encode(2, x) > 0).sum(-1) <= 4).all()


def test_two_gloo_processes_train_the_same_clt_as_one(tiny_models, corpus, tmp_path):
    from tests.conftest import run_ddp_worker

    cfg = TrainConfig(hook=IN, hook_out=OUT, layers=[0, 1, 2], clt=True, architecture="jumprelu", d_sae=32, k=8,
                      init_l0=4.0, tokens=256 * 8, batch_size=256, seq_len=32, block_rows=32, corpus=corpus, lr=1e-3,
                      log_every=4, checkpoint_every=4, max_norm_ratio=0.0)
    single = train(tiny_models["tiny-llama"], cfg, tmp_path / "single")
    proc = run_ddp_worker(tmp_path / "ddp", corpus, "clt", port=29536)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp, ref = load_clt(tmp_path / "ddp"), single.sae.folded()
    for name, b in ref.state_dict().items():  # equal up to the order of the gradient sums
        a = ddp.state_dict()[name]
        assert (a - b).abs().max() < 1e-4 and (a - b).norm() / b.norm().clamp_min(1e-12) < 1e-5, name


def test_the_cli_trains_a_clt_and_refuses_what_does_not_fit_in_one_line(corpus, tmp_path):
    from tests.test_cli import assert_one_line_error, run_json

    base = ("sae", "train", "--model", "tiny-llama", "--corpus", corpus, "--clt", "--d-sae", "16", "--k", "2",
            "--tokens", "512", "--batch-size", "128", "--max-norm-ratio", "0")
    assert_one_line_error(*base, "--layers", "0-2", "--arch", "relu", "--out", str(tmp_path / "x"),
                          message="a CLT is trained as jumprelu or topk")
    assert_one_line_error(*base, "--layers", "0,2", "--arch", "topk", "--out", str(tmp_path / "x"),
                          message="contiguous range")
    assert not (tmp_path / "x").exists()
    out = run_json(*base, "--layers", "1-2", "--arch", "topk", "--out", str(tmp_path / "c"))
    assert out["clt"] and out["layers"] == [1, 2] and [f["layer"] for f in out["per_layer"]] == [1, 2]
    tset = load_set(tmp_path / "c")  # a CLT over layers 1-2: its first layer is the model's layer 1
    assert sorted(tset.layers) == [1, 2] and [i for i, _ in tset.decoders_into(2)] == [1, 2]
    assert tset.input_hook(2) == "blocks.2.hook_resid_mid"
