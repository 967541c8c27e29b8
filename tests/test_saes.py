"""SAE contract tests over every architecture, textbook losses, estimators, and SAELens files."""

import json

import pytest
import torch
from safetensors.torch import save_file

from interp.errors import InterpError
from saes import ARCHITECTURES, BatchTopKSAE, SAEConfig, TopKSAE, load_sae, make_sae, resolve_hook, save_sae

D_IN, D_SAE = 16, 48


def _sae(arch, **kw):
    torch.manual_seed(0)
    return make_sae(SAEConfig(arch, D_IN, D_SAE, hook_name="blocks.1.hook_resid_post", k=4, **kw))


def _x(n=64):
    g = torch.Generator().manual_seed(1)
    return 3.0 * torch.randn(n, D_IN, generator=g) + 1.0


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_contract(arch):
    sae = _sae(arch)
    x = _x()
    out = sae(x)
    assert out.x_hat.shape == x.shape and out.feature_acts.shape == out.pre_acts.shape == (64, D_SAE)
    assert (out.feature_acts >= 0).all()
    torch.testing.assert_close(sae.decode(sae.encode(x)), out.x_hat)
    loss = sae.loss(x, progress=0.5, dead=torch.ones(D_SAE, dtype=torch.bool))
    assert torch.isfinite(loss.loss) and loss.loss.item() >= loss.mse.item() - 1e-6
    loss.loss.backward()
    assert sae.W_enc.grad is not None and torch.isfinite(sae.W_enc.grad).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_input_scale_folds_into_the_weights(arch):
    sae = _sae(arch).eval()
    x = _x()
    sae.set_input_scale_(x)
    assert (x * sae.input_scale).norm(dim=-1).mean().item() == pytest.approx(D_IN ** 0.5, rel=1e-5)
    before = sae(x)
    sae.fold_input_scale_()
    after = sae(x)
    assert sae.input_scale.item() == 1.0
    torch.testing.assert_close(after.x_hat, before.x_hat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(after.feature_acts, before.feature_acts, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saelens_files_round_trip(arch, tmp_path):
    sae = _sae(arch)
    x = _x()
    sae.set_input_scale_(x)
    if arch == "batchtopk":  # the threshold is learned in training
        sae.train()
        sae(x)
    sae.eval()
    expected = sae(x)
    path = save_sae(sae, tmp_path / "sae")
    cfg = json.loads((path / "cfg.json").read_text())
    assert cfg["d_in"] == D_IN and cfg["d_sae"] == D_SAE and cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    loaded = load_sae(path)
    got = loaded(x)
    torch.testing.assert_close(got.x_hat, expected.x_hat, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got.feature_acts, expected.feature_acts, rtol=1e-4, atol=1e-4)
    assert (type(loaded).__name__ == "JumpReLUSAE") == (arch in ("jumprelu", "batchtopk"))
    assert sae.input_scale.item() != 1.0  # saving never changes the live SAE


def test_relu_loss_hand_computed():
    sae = make_sae(SAEConfig("relu", 2, 2, l1_coefficient=0.5))
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
        sae.b_enc.copy_(torch.tensor([0.0, -1.0]))
        sae.W_dec.copy_(torch.tensor([[2.0, 0.0], [0.0, 3.0]]))
        sae.b_dec.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[1.5, 3.0]])
    # pre = (x − b_dec) W_enc + b_enc = [1, 3] + [0, −1] = [1, 2]; f = [1, 2]
    # x̂ = f W_dec + b_dec = [2, 6] + [0.5, 0] = [2.5, 6]; ‖x − x̂‖² = 1 + 9 = 10
    # L1 = Σ f_j ‖W_dec,j‖ = 1·2 + 2·3 = 8; λ = 0.5 after the warm-up, 0.5·(0.025/0.05) halfway through it
    full = sae.loss(x, progress=1.0)
    assert (full.mse.item(), full.sparsity.item(), full.loss.item()) == pytest.approx((10.0, 4.0, 14.0))
    assert sae.loss(x, progress=0.025).sparsity.item() == pytest.approx(2.0)
    assert sae.W_dec.norm(dim=1).tolist() == [2.0, 3.0]  # no unit-norm constraint on the ReLU decoder


def test_relu_init_is_anthropic_april_2024():
    sae = _sae("relu")
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.full((D_SAE,), 0.1))
    torch.testing.assert_close(sae.W_enc, sae.W_dec.T)


def test_topk_keeps_k_and_unit_decoder_rows():
    sae = _sae("topk")
    f = sae.encode(_x())
    assert ((f > 0).sum(-1) <= 4).all() and ((f > 0).sum(-1) == 4).float().mean() > 0.9
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(D_SAE))
    sae.loss(_x()).loss.backward()
    sae.remove_parallel_grad_()
    assert (sae.W_dec.grad * sae.W_dec).sum(1).abs().max() < 1e-5


def test_geometric_median_init():
    from saes.topk import geometric_median

    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])
    m = geometric_median(pts)
    assert m.norm() < 1.0  # robust to the outlier, unlike the mean (25.25, 25.25)


def test_auxk_revives_dead_latents():
    torch.manual_seed(0)
    sae = _sae("topk")
    with torch.no_grad():  # half the latents have small positive pre-activations that never win the top-k
        sae.W_enc[:, : D_SAE // 2] *= 0.01
        sae.b_enc[: D_SAE // 2] = 0.05
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[: D_SAE // 2] = True
    x = _x(256)
    no_aux = sae.loss(x, dead=None)
    no_aux.loss.backward()
    assert sae.b_enc.grad[: D_SAE // 2].abs().max() == 0  # without AuxK, dead latents get no gradient
    sae.zero_grad()
    opt = torch.optim.Adam(sae.parameters(), lr=1e-2)
    fired_before = (sae.encode(x)[:, : D_SAE // 2] > 0).any(0).sum().item()
    for _ in range(300):
        opt.zero_grad()
        sae.loss(x, dead=dead).loss.backward()
        sae.remove_parallel_grad_()
        opt.step()
        sae.normalize_decoder_()
    fired_after = (sae.encode(x)[:, : D_SAE // 2] > 0).any(0).sum().item()
    assert fired_before == 0 and fired_after > 0


def test_jumprelu_straight_through_gradients():
    sae = _sae("jumprelu", jumprelu_bandwidth=0.5, jumprelu_init_threshold=1.0)
    pre = torch.tensor([[0.9, 1.1, 3.0]])
    from saes.jumprelu import _JumpReLU, _Step

    thr = torch.ones(3, requires_grad=True)
    _JumpReLU.apply(pre, thr, 0.5).sum().backward()
    # ∂f/∂θ = −(θ/ε) K((pre − θ)/ε): inside the window (|pre − θ| < ε/2) it is −1/0.5 = −2
    assert thr.grad.tolist() == pytest.approx([-2.0, -2.0, 0.0])
    thr.grad = None
    _Step.apply(pre, thr, 0.5).sum().backward()
    assert thr.grad.tolist() == pytest.approx([-2.0, -2.0, 0.0])
    assert _JumpReLU.apply(pre, torch.ones(3), 0.5)[0].tolist() == pytest.approx([0.0, 1.1, 3.0])
    assert sae.threshold.shape == (D_SAE,)


def test_jumprelu_threshold_from_data_sets_each_latents_firing_rate():
    sae = _sae("jumprelu")
    x = _x(1000)
    sae.init_threshold_from_(x, l0=6.0)
    fires = (sae.encode(x) > 0).float()
    # every latent whose quantile is above the floor fires on 6/48 of the sample (125 of 1000 tokens; the
    # 875th value itself may also fire, as θ is stored as log θ and exp(log θ) can round just below it)
    above = sae.threshold > sae.cfg.jumprelu_init_threshold
    assert above.sum() > D_SAE // 2
    assert set(fires[:, above].sum(0).tolist()) <= {125.0, 126.0}
    naive = torch.stack([torch.sort(sae.pre_acts(x)[:, j]).values[874] for j in range(D_SAE)])
    torch.testing.assert_close(sae.threshold[above], naive[above])


def test_batchtopk_budget_and_threshold():
    sae = _sae("batchtopk")
    assert isinstance(sae, BatchTopKSAE) and isinstance(sae, TopKSAE)
    sae.train()
    x = _x(32)
    f = sae.encode(x)
    assert (f > 0).sum().item() <= 4 * 32 and sae.threshold.item() > 0
    per_token = (f > 0).sum(-1)
    assert per_token.max() > per_token.min()  # the budget is the batch's, not each token's
    sae.eval()
    torch.testing.assert_close(sae.encode(x), sae.to_jumprelu().encode(x))
    # calibrated on a batch, the inference threshold keeps (almost exactly) that batch's k × batch activations
    big = _x(512)
    theta = sae.calibrate_threshold_([big])
    pre = torch.relu(sae.pre_acts(big)).flatten()
    assert theta == pytest.approx(pre.topk(4 * 512).values.min().item())
    assert (sae.encode(big) > 0).sum().item() == 4 * 512 - 1  # all but the one equal to θ


def test_unknown_architecture_and_bad_sizes():
    with pytest.raises(InterpError, match="unknown SAE architecture 'gated'"):
        SAEConfig("gated", 4, 8)
    with pytest.raises(InterpError, match="k must be between"):
        SAEConfig("topk", 4, 8, k=9)


def _saelens_dir(tmp_path, cfg: dict, tensors: dict):
    d = tmp_path / "release"
    d.mkdir()
    (d / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(d / "sae_weights.safetensors"))
    return d


def test_loads_saelens_v6_and_legacy_layouts(tmp_path):
    g = torch.Generator().manual_seed(0)
    t = {"W_enc": torch.randn(64, 128, generator=g), "W_dec": torch.randn(128, 64, generator=g),
         "b_enc": torch.randn(128, generator=g), "b_dec": torch.randn(64, generator=g)}
    v6 = {"architecture": "standard", "d_in": 64, "d_sae": 128, "dtype": "float32", "device": "cpu",
          "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
          "metadata": {"model_name": "gpt2", "hook_name": "blocks.1.hook_resid_pre", "prepend_bos": True}}
    sae = load_sae(_saelens_dir(tmp_path, v6, t))
    assert sae.cfg.architecture == "relu" and sae.cfg.hook_name == "blocks.1.hook_resid_pre"
    x = torch.randn(5, 64)
    expected = torch.relu((x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]) @ t["W_dec"] + t["b_dec"]
    torch.testing.assert_close(sae(x).x_hat, expected, rtol=1e-4, atol=1e-4)
    legacy = {"d_in": 64, "d_sae": 128, "hook_point": "blocks.2.hook_resid_pre", "model_name": "gpt2",
              "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 8}, "dtype": "torch.float32"}
    (tmp_path / "legacy").mkdir()
    d = tmp_path / "legacy"
    (d / "cfg.json").write_text(json.dumps(legacy))
    save_file(t, str(d / "sae_weights.safetensors"))
    old = load_sae(d)
    assert (old.cfg.architecture, old.cfg.k, old.cfg.hook_name) == ("topk", 8, "blocks.2.hook_resid_pre")


def test_bad_files_are_one_line(tmp_path):
    sae = _sae("jumprelu")
    path = save_sae(sae, tmp_path / "s")
    weights = path / "sae_weights.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(InterpError, match="corrupt or truncated"):
        load_sae(path)
    save_file({"W_enc": torch.zeros(D_IN, 5), "W_dec": torch.zeros(D_SAE, D_IN), "b_enc": torch.zeros(D_SAE),
               "b_dec": torch.zeros(D_IN), "threshold": torch.zeros(D_SAE)}, str(weights))
    with pytest.raises(InterpError, match=r"W_enc has shape \(16, 5\)"):
        load_sae(path)
    (path / "cfg.json").write_text("{")
    with pytest.raises(InterpError, match="is not JSON"):
        load_sae(path)
    with pytest.raises(InterpError, match="cfg.json is missing"):
        load_sae(tmp_path)


def test_hook_and_width_are_checked_against_the_model(tiny):
    sae = make_sae(SAEConfig("topk", tiny.cfg.d_model, 32, hook_name="blocks.1.hook_resid_post", k=4))
    assert resolve_hook(tiny, sae) == "blocks.1.hook_resid_post"
    wrong = make_sae(SAEConfig("topk", tiny.cfg.d_model + 1, 32, hook_name="blocks.1.hook_resid_post", k=4))
    with pytest.raises(InterpError, match="does not match hook"):
        resolve_hook(tiny, wrong)
    missing = make_sae(SAEConfig("topk", tiny.cfg.d_model, 32, hook_name="blocks.1.hook_resid_pots", k=4))
    with pytest.raises(InterpError, match="did you mean blocks.1.hook_resid_post"):
        resolve_hook(tiny, missing)


def test_topk_sparse_decode_equals_the_dense_textbook_step():
    from saes.base import SAE

    sae = _sae("topk")
    x = _x()
    fast, dense = sae(x), SAE.forward(sae, x)
    torch.testing.assert_close(fast.x_hat, dense.x_hat, rtol=1e-5, atol=1e-5)
    assert torch.equal(fast.feature_acts, dense.feature_acts)
    g_fast = torch.autograd.grad(sae.mse(x, fast.x_hat), [sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec])
    g_dense = torch.autograd.grad(sae.mse(x, dense.x_hat), [sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec])
    for a, b in zip(g_fast, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_tradeoff_figure_draws_one_curve_per_architecture():
    from interp.figures import sae_tradeoff_figure

    pts = [{"architecture": a, "knob": "k", "value": v, "l0": v, "fvu": 1 / v, "tokens": 10**6}
           for a in ("topk", "relu") for v in (64, 16, 32)]
    pts.append({"architecture": "topk", "knob": "k", "value": 32, "l0": 31.5, "fvu": 0.2, "tokens": 2 * 10**6,
                "main": True})
    fig = sae_tradeoff_figure(pts)
    assert [t.name for t in fig.data][:2] == ["topk", "relu"] and len(fig.data) == 3
    assert list(fig.data[0].x) == [16, 32, 64]  # sorted by L0
    assert "2.0M tokens" in fig.data[2].name


@pytest.mark.parametrize("n_dead", [0, 3, D_SAE // 2])
def test_auxk_without_host_sync_equals_the_textbook_term(n_dead):
    """The sync-free AuxK (−inf mask, fixed aux_k, × any-dead) against Gao et al.'s term written out:
    the top min(aux_k, #dead) dead pre-activations, ReLU'd, reconstruct the residual densely."""
    from dataclasses import replace

    torch.manual_seed(1)
    sae = make_sae(replace(_sae("topk").cfg, aux_k=8))
    x = _x(32)
    dead = torch.zeros(D_SAE, dtype=torch.bool)
    dead[torch.randperm(D_SAE)[:n_dead]] = True
    out = sae(x)
    got = sae.aux_loss(x, out, dead)
    if n_dead == 0:
        assert got.item() == 0.0
        return
    residual = (x - out.x_hat) * sae.input_scale
    pre = out.pre_acts.masked_fill(~dead, float("-inf"))
    vals, idx = pre.topk(min(8, n_dead), dim=-1)
    f = torch.zeros_like(pre).scatter(-1, idx, torch.relu(vals))
    want = sae.cfg.aux_coefficient * (residual - f @ sae.W_dec).pow(2).sum(-1).mean()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_batchtopk_threshold_ema_follows_the_smallest_kept_value():
    """The device-side EMA: first batch sets θ to its smallest kept activation, later ones lerp at
    THRESHOLD_EMA; a batch that keeps only zeros leaves θ alone."""
    from saes.batchtopk import THRESHOLD_EMA

    sae = _sae("batchtopk").train()
    lows = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        x = _x(16)
        vals, _ = sae._batch_topk(sae.pre_acts(x))
        lows.append(vals[vals > 0].min().item())
        sae.encode(x)
    assert sae.threshold.item() == pytest.approx(lows[0] + THRESHOLD_EMA * (lows[1] - lows[0]), rel=1e-5)
    before = sae.threshold.item()
    sae.activation(torch.full((4, D_SAE), -1.0))  # nothing positive to keep
    assert sae.threshold.item() == before


def test_an_sae_of_another_model_is_refused_unless_forced(tiny):
    """A cfg.json naming gpt2, with a matching width, used to be evaluated on the embedded model
    without a word."""
    other = make_sae(SAEConfig("topk", tiny.cfg.d_model, 32, hook_name="blocks.1.hook_resid_post", k=4,
                               model_name="gpt2"))
    with pytest.raises(InterpError, match=f"trained on 'gpt2' .*not on '{tiny.cfg.model_name}'.*--force"):
        resolve_hook(tiny, other)
    assert resolve_hook(tiny, other, force=True) == "blocks.1.hook_resid_post"
    mine = make_sae(SAEConfig("topk", tiny.cfg.d_model + 1, 32, hook_name="blocks.1.hook_resid_post", k=4,
                              model_name=tiny.cfg.model_name.upper()))
    with pytest.raises(InterpError, match=f"trained on {tiny.cfg.model_name.upper()}, blocks.1.hook_resid_post"):
        resolve_hook(tiny, mine)


def test_model_names_compare_without_organisation_case_or_alias():
    from saes.io import _model_key

    assert _model_key("HuggingFaceTB/SmolLM2-135M-Instruct") == _model_key("smollm2-135m") == "smollm2-135m"
    assert _model_key("gpt2") != _model_key("smollm2-135m")
