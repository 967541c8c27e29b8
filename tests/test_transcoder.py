"""Skip transcoders: the formula, multi-layer training from one pass, resume, the set's three layouts."""

import json
import re

import pytest
import torch
import yaml
from safetensors.torch import save_file

from interp.errors import InterpError
from saes.activations import ActivationStore
from saes.config import SAEConfig
from saes.io import load_sae, make_sae
from saes.train import TrainConfig, layer_seed, train
from saes.transcoder import check_transcoder_hooks, load_set, parse_layers, save_circuit_tracer

IN, OUT = "blocks.{l}.hook_resid_mid", "blocks.{l}.hook_mlp_out"


def _hand_set(arch: str, skip: bool, d=6, n=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    sae = make_sae(SAEConfig(arch, d, n, hook_name="blocks.0.hook_resid_mid", hook_out="blocks.0.hook_mlp_out",
                             skip=skip, k=3))
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        sae.input_scale.fill_(1.7)
        sae.output_scale.fill_(0.6)
    return sae.eval()


@pytest.mark.parametrize("skip", [True, False])
@pytest.mark.parametrize("arch", ["topk", "relu"])
def test_skip_transcoder_forward_and_loss_are_the_textbook_formula(arch, skip):
    sae = _hand_set(arch, skip).requires_grad_(False)
    x, y = torch.randn(5, 6), torch.randn(5, 6)
    s, t = 1.7, 0.6
    xs = s * x
    pre = (xs - sae.b_in) @ sae.W_enc + sae.b_enc
    if arch == "topk":  # the 3 largest, then ReLU
        f = torch.zeros_like(pre)
        for i in range(5):
            top = sorted(range(10), key=lambda j: -float(pre[i, j]))[:3]
            for j in top:
                f[i, j] = max(float(pre[i, j]), 0.0)
    else:
        f = pre.clamp_min(0)
    y_hat = f @ sae.W_dec + sae.b_dec + (xs @ sae.W_skip.T if skip else 0)
    y_hat = y_hat / t
    out = sae(x)
    torch.testing.assert_close(out.feature_acts, f, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.x_hat, y_hat, rtol=1e-5, atol=1e-5)
    loss = sae.loss(x, 1.0, None, target=y)
    mse = ((t * y - t * y_hat) ** 2).sum(-1).mean()
    torch.testing.assert_close(loss.mse, mse, rtol=1e-5, atol=1e-5)
    # saving folds s, t and b_in into the weights; the file computes the same function
    folded = load_sae_roundtrip(sae)
    torch.testing.assert_close(folded(x).x_hat, y_hat, rtol=1e-4, atol=1e-4)
    assert float(folded.b_in.abs().max()) == 0


def test_the_skip_initialisation_is_numpy_ridge_least_squares():
    import numpy as np

    sae = _hand_set("topk", True)
    sae.input_scale.fill_(1.7)
    sae.output_scale.fill_(0.6)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 6, generator=g) + 0.5
    y = x @ torch.randn(6, 6, generator=g) + 0.1 * torch.randn(200, 6, generator=g) - 2.0
    w_enc = sae.W_enc.detach().clone()
    fvu = sae.init_skip_(x, y, ridge=0.05, latent_scale=0.25)
    # the textbook ridge solution on centred, scaled data, the intercept from the means, written with numpy
    xs, ys = 1.7 * x.double().numpy(), 0.6 * y.double().numpy()
    xc, yc = xs - xs.mean(0), ys - ys.mean(0)
    lam = 0.05 * len(xs) * (xc ** 2).mean()
    w = np.linalg.lstsq(np.vstack([xc, np.sqrt(lam) * np.eye(6)]), np.vstack([yc, np.zeros((6, 6))]), rcond=None)[0]
    np.testing.assert_allclose(sae.W_skip.detach().double().numpy(), w.T, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sae.b_dec.detach().double().numpy(), ys.mean(0) - xs.mean(0) @ w, rtol=1e-4, atol=1e-4)
    assert fvu == pytest.approx(((yc - xc @ w) ** 2).sum() / (yc ** 2).sum(), rel=1e-6)
    assert 0 < fvu < 0.05  # the noise is 10% of a linear map
    torch.testing.assert_close(sae.W_enc.detach(), 0.25 * w_enc)  # the latents start quiet


def load_sae_roundtrip(sae):
    import tempfile

    from saes.io import save_sae

    with tempfile.TemporaryDirectory() as d:
        save_sae(sae, d)
        return load_sae(d)


def _cfg(corpus, **kw):
    base = dict(hook=IN, hook_out=OUT, architecture="topk", d_sae=96, k=6, tokens=128 * 8, batch_size=128,
                seq_len=32, block_rows=16, corpus=corpus, lr=1e-3, log_every=4, checkpoint_every=4,
                max_norm_ratio=0.0)
    return TrainConfig(**{**base, **kw})


def test_one_multi_layer_job_equals_single_layer_jobs_with_one_forward_per_block(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    forwards = []
    handle = model.blocks[0].register_forward_pre_hook(lambda *a: forwards.append(1))
    try:
        multi = train(model, _cfg(corpus, layers=[0, 1, 2]), tmp_path / "set")
    finally:
        handle.remove()
    store = ActivationStore(model, ["blocks.0.hook_resid_mid"], corpus, 128, 32, 16, max_norm_ratio=0)
    blocks = -(-8 // store.batches_per_block)
    model_batches = -(-16 // store.model_batch)
    assert len(forwards) == blocks * model_batches  # one forward per block (per model micro-batch), not per layer
    for layer in (0, 1, 2):  # a single-layer run with the layer's own initial seed is the same dictionary
        single = train(model, _cfg(corpus, hook=IN.format(l=layer), hook_out=OUT.format(l=layer),
                                   init_seed=layer_seed(0, layer)), tmp_path / f"single{layer}")
        for name, p in single.sae.state_dict().items():
            assert torch.equal(p, multi.layers[layer].state_dict()[name]), (layer, name)
        lines = (tmp_path / "set" / f"layer_{layer}" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == [4, 8]
    for a, b in ((0, 1), (1, 2)):  # no two layers start alike: after 8 steps latent j of adjacent layers differs
        wa, wb = multi.layers[a].W_enc.detach(), multi.layers[b].W_enc.detach()
        same = torch.nn.functional.cosine_similarity(wa, wb, dim=0).mean()
        assert abs(float(same)) < 0.3, (a, b, float(same))
    manifest = json.loads((tmp_path / "set" / "set.json").read_text())
    assert manifest["kind"] == "transcoders" and set(manifest["layers"]) == {"0", "1", "2"}
    tset = load_set(tmp_path / "set")
    assert tset.transcoders and sorted(tset.layers) == [0, 1, 2]
    assert tset.input_hook(2) == "blocks.2.hook_resid_mid" and tset.output_hook(2) == "blocks.2.hook_mlp_out"


def test_a_killed_multi_layer_job_resumes_bit_exact(tiny_models, corpus, tmp_path, killed_at_step, capsys):
    model = tiny_models["tiny-gpt2"]
    cfg = _cfg(corpus, layers=[0, 2], tokens=128 * 12)
    whole = train(model, cfg, tmp_path / "whole")
    killed_at_step(6)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        train(model, cfg, tmp_path / "killed")
    said = capsys.readouterr().err  # Ctrl-C says what is kept and how to go on
    assert "interrupted;" in said and "checkpoint at step 4:" in said and "run the same command again" in said
    with pytest.raises(InterpError, match="unfinished set: .*run the `interp sae train` command that made it again"):
        load_set(tmp_path / "killed")
    with pytest.raises(InterpError, match="unfinished training run .*run the `interp sae train` command"):
        load_sae(tmp_path / "killed" / "layer_0")
    killed_at_step(None)
    resumed = train(model, cfg, tmp_path / "killed")
    assert resumed.resumed_from == 4
    for layer in (0, 2):
        for name, p in whole.layers[layer].state_dict().items():
            assert torch.equal(p, resumed.layers[layer].state_dict()[name]), (layer, name)
    with pytest.raises(InterpError, match="different run"):  # a resume with other options
        train(model, _cfg(corpus, layers=[0, 2], tokens=128 * 12, k=5), tmp_path / "killed")


def test_plain_saes_train_per_layer_from_a_hook_template(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    res = train(model, _cfg(corpus, hook="blocks.{l}.hook_resid_post", hook_out="", layers=[1, 2]), tmp_path / "s")
    assert not res.layers[1].is_transcoder and res.layers[2].cfg.hook_name == "blocks.2.hook_resid_post"
    tset = load_set(tmp_path / "s")
    assert not tset.transcoders and not (tmp_path / "s" / "config.yaml").exists()


def _formula_ct(t, x, activation, k=None):
    pre = x @ t["W_enc"].T + t["b_enc"]
    if activation == "relu":
        f = pre.clamp_min(0)
    elif activation == "jumprelu":
        f = pre * (pre > t["activation_function.threshold"])
    else:
        idx = pre.topk(k, -1).indices
        f = torch.zeros_like(pre).scatter(-1, idx, pre.gather(-1, idx))
    y = f @ t["W_dec"] + t["b_dec"]
    return y + x @ t["W_skip"].T if "W_skip" in t else y


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_a_hand_written_circuit_tracer_set_computes_its_formula(tmp_path, activation):
    g = torch.Generator().manual_seed(1)
    d, n = 8, 20
    for layer in range(2):
        t = {"W_enc": torch.randn(n, d, generator=g), "W_dec": torch.randn(n, d, generator=g),
             "b_enc": torch.randn(n, generator=g) + 1.0, "b_dec": torch.randn(d, generator=g),
             "W_skip": torch.randn(d, d, generator=g)}
        if activation == "jumprelu":
            t["activation_function.threshold"] = torch.rand(n, generator=g)
        save_file(t, str(tmp_path / f"layer_{layer}.safetensors"))
    config = {"model_kind": "transcoder_set", "feature_input_hook": "hook_resid_mid",
              "feature_output_hook": "hook_mlp_out", "activation": activation}
    if activation == "topk":
        config["k"] = 4
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    tset = load_set(tmp_path)
    assert tset.source == "circuit-tracer" and tset.output_hook(1) == "blocks.1.hook_mlp_out"
    x = torch.randn(7, d, generator=g) + 2.0  # inputs with positive top-k pre-activations
    from safetensors.torch import load_file

    for layer in range(2):
        t = load_file(str(tmp_path / f"layer_{layer}.safetensors"))
        want = _formula_ct(t, x, activation, 4)
        torch.testing.assert_close(tset[layer](x).x_hat, want, rtol=1e-4, atol=1e-4)
    # and ours written in circuit-tracer's layout reads back to the same function
    save_circuit_tracer(tset, tmp_path / "again")
    again = load_set(tmp_path / "again")
    for layer in range(2):
        torch.testing.assert_close(again[layer](x).x_hat, tset[layer](x).x_hat, rtol=1e-5, atol=1e-5)


def test_a_trained_set_round_trips_through_circuit_tracer_files(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    res = train(model, _cfg(corpus, layers=[0, 1, 2], tokens=128 * 4), tmp_path / "set")
    cfg = yaml.safe_load((tmp_path / "set" / "config.yaml").read_text())
    assert cfg["model_kind"] == "transcoder_set" and cfg["feature_input_hook"] == "hook_resid_mid"
    assert cfg["activation"] == "topk" and cfg["k"] == 6
    ours = load_set(tmp_path / "set")
    (tmp_path / "ct").mkdir()
    for f in (tmp_path / "set").glob("layer_*.safetensors"):
        (tmp_path / "ct" / f.name).write_bytes(f.read_bytes())
    (tmp_path / "ct" / "config.yaml").write_bytes((tmp_path / "set" / "config.yaml").read_bytes())
    ct = load_set(tmp_path / "ct")
    x = torch.randn(9, model.cfg.d_model) * 3
    for layer in range(3):
        res.layers[layer].eval()
        torch.testing.assert_close(ct[layer](x).x_hat, res.layers[layer](x).x_hat, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(ours[layer](x).x_hat, res.layers[layer](x).x_hat, rtol=1e-4, atol=1e-4)


def test_a_hand_written_sparsify_checkpoint_computes_its_formula(tmp_path):
    g = torch.Generator().manual_seed(2)
    d, n, k = 8, 24, 5
    for layer in (0, 1):
        folder = tmp_path / f"layers.{layer}.mlp"
        folder.mkdir()
        t = {"encoder.weight": torch.randn(n, d, generator=g), "encoder.bias": torch.randn(n, generator=g),
             "W_dec": torch.randn(n, d, generator=g), "b_dec": torch.randn(d, generator=g),
             "W_skip": torch.randn(d, d, generator=g)}
        save_file(t, str(folder / "sae.safetensors"))
        (folder / "cfg.json").write_text(json.dumps({"activation": "topk", "k": k, "num_latents": n, "transcode": True,
                                                     "skip_connection": True, "d_in": d}))
    tset = load_set(tmp_path)
    assert tset.source == "sparsify" and tset.input_hook(1) == "blocks.1.mlp.hook_in"
    x = torch.randn(6, d, generator=g)
    from safetensors.torch import load_file

    for layer in (0, 1):
        t = load_file(str(tmp_path / f"layers.{layer}.mlp" / "sae.safetensors"))
        pre = torch.relu(x @ t["encoder.weight"].T + t["encoder.bias"])  # sparsify: ReLU, then the top k
        vals, idx = pre.topk(k, -1)
        want = torch.zeros(6, n).scatter(-1, idx, vals) @ t["W_dec"] + t["b_dec"] + x @ t["W_skip"].T
        torch.testing.assert_close(tset[layer](x).x_hat, want, rtol=1e-4, atol=1e-4)


def test_bad_sets_and_layer_lists_get_one_clear_line(tmp_path, tiny_models):
    for spec in ("", "a-b", "5-2", "1,,2"):
        with pytest.raises(InterpError, match="not a list of layers"):
            parse_layers(spec)
    with pytest.raises(InterpError, match="out of range"):
        parse_layers("0-30", 30)
    assert parse_layers("0-2,5", 30) == [0, 1, 2, 5] and parse_layers("all", 3) == [0, 1, 2]
    with pytest.raises(InterpError, match="MLP's input"):
        check_transcoder_hooks("blocks.{l}.hook_resid_post", OUT)
    with pytest.raises(InterpError, match="MLP's output"):
        check_transcoder_hooks(IN, "blocks.{l}.hook_resid_post")
    # circuit-tracer files with a missing key and a wrong shape
    bad = tmp_path / "ct"
    bad.mkdir()
    (bad / "config.yaml").write_text(yaml.safe_dump({"model_kind": "transcoder_set", "feature_input_hook": "hook_resid_mid",
                                                     "feature_output_hook": "hook_mlp_out", "activation": "relu"}))
    save_file({"W_enc": torch.zeros(4, 3), "W_dec": torch.zeros(4, 3), "b_enc": torch.zeros(4)},
              str(bad / "layer_0.safetensors"))
    with pytest.raises(InterpError, match="lacks b_dec"):
        load_set(bad)
    save_file({"W_enc": torch.zeros(4, 3), "W_dec": torch.zeros(4, 2), "b_enc": torch.zeros(4), "b_dec": torch.zeros(3)},
              str(bad / "layer_0.safetensors"))
    with pytest.raises(InterpError, match="W_dec has shape"):
        load_set(bad)
    sp = tmp_path / "sp" / "layers.0.mlp"
    sp.mkdir(parents=True)
    save_file({"encoder.weight": torch.zeros(4, 3), "W_dec": torch.zeros(4, 3), "b_dec": torch.zeros(3)},
              str(sp / "sae.safetensors"))
    (sp / "cfg.json").write_text("{}")
    with pytest.raises(InterpError, match="lacks encoder.bias"):
        load_set(tmp_path / "sp")
    # a set for another model, and one whose width does not match
    model = tiny_models["tiny-llama"]
    save_file({"W_enc": torch.zeros(4, 3), "W_dec": torch.zeros(4, 3), "b_enc": torch.zeros(4), "b_dec": torch.zeros(3)},
              str(bad / "layer_0.safetensors"))
    with pytest.raises(InterpError, match="d_model"):
        load_set(bad).check_model(model)
    (bad / "config.yaml").write_text(yaml.safe_dump({"model_kind": "transcoder_set", "model_name": "gpt2",
                                                     "feature_input_hook": "hook_resid_mid",
                                                     "feature_output_hook": "hook_mlp_out", "activation": "relu"}))
    with pytest.raises(InterpError, match="trained on 'gpt2'"):
        load_set(bad).check_model(model)
    with pytest.raises(InterpError, match="not a transcoder set"):
        load_set(tmp_path / "nothing")


def test_the_replacement_model_evaluation_equals_a_hand_written_splice(tiny_models, corpus, tmp_path):
    from interp.corpus import token_rows
    from saes.replacement import evaluate_replacement

    model = tiny_models["tiny-llama"]
    train(model, _cfg(corpus, layers=[0, 1, 2], tokens=128 * 4), tmp_path / "set")
    tset = load_set(tmp_path / "set")
    from interp import progress as P

    events = []
    P.ESTIMATE_OVER, over = 0.0, P.ESTIMATE_OVER  # the estimate line, forced
    try:
        with P.listening(events.append):
            res = evaluate_replacement(model, tset, corpus, tokens=8 * 32, seq_len=32, batch_rows=4, max_norm_ratio=0)
    finally:
        P.ESTIMATE_OVER = over
    # the bar counts forward passes (2 batches of 3 + 2 per layer), and an estimate comes once two are timed
    bars = [e for e in events if e.get("desc") == "replacement model eval"]
    assert bars and bars[0]["total"] == 2 * (3 + 2 * 3) and bars[-1]["n"] == bars[-1]["total"]
    said = [e["estimate"] for e in events if "estimate" in e]
    assert len(said) == 1 and "for 18 forward passes" in said[0] and "--no-per-layer" in said[0]
    # the reference: one forward with every transcoder spliced in by hooks, positions 1.. replaced
    rows = torch.stack(list(token_rows(model, corpus, 8 * 32, 32, skip_rows=res.skip_rows)))
    seen = {}
    hooks = []
    for layer in range(3):
        hooks.append((f"blocks.{layer}.hook_resid_mid", lambda x, hook, layer=layer: seen.__setitem__(layer, x)))

        def put(y, hook, layer=layer):
            y = y.clone()
            y[:, 1:] = tset[layer](seen[layer][:, 1:]).x_hat
            return y

        hooks.append((f"blocks.{layer}.hook_mlp_out", put))
    with torch.no_grad():
        clean = model(rows).float()
        repl = model.run_with_hooks(rows, fwd_hooks=hooks).float()
    target = rows[:, 2:]
    lp_c, lp_r = clean[:, 1:-1].log_softmax(-1), repl[:, 1:-1].log_softmax(-1)
    ce_c = -lp_c.gather(-1, target[..., None]).mean().item()
    ce_r = -lp_r.gather(-1, target[..., None]).mean().item()
    kl = (lp_c.exp() * (lp_c - lp_r)).sum(-1).mean().item()
    agree = (clean[:, 1:-1].argmax(-1) == repl[:, 1:-1].argmax(-1)).float().mean().item()
    assert res.ce_clean == pytest.approx(ce_c, rel=1e-4) and res.ce_replacement == pytest.approx(ce_r, rel=1e-4)
    assert res.kl == pytest.approx(kl, rel=1e-3, abs=1e-6) and res.top1_agreement == pytest.approx(agree)
    assert len(res.layers) == 3 and all(0 <= f.dead_frac <= 1 and f.l0 <= 6 for f in res.layers)
    assert res.ce_zero != res.ce_clean
    res.figure()


def test_transcoder_features_extract_top_dashboard_and_steer_on_the_output_path(tiny_models, corpus, tmp_path):
    from saes.features.dashboard import feature_dashboard
    from saes.features.extract import ExtractConfig, extract_features
    from saes.features.steer import steering_hooks
    from saes.features.store import FeatureStore

    model = tiny_models["tiny-llama"]
    train(model, _cfg(corpus, layers=[0, 1, 2], tokens=128 * 4), tmp_path / "set")
    layer1 = tmp_path / "set" / "layer_1"
    tc = load_sae(layer1)
    extract_features(model, [layer1], tmp_path / "store",
                     ExtractConfig(corpus=corpus, ctx=32, contexts_per_shard=8, model_batch=4, tokens=600,
                                   max_norm_ratio=0.0))
    store = FeatureStore(tmp_path / "store")
    assert store.manifest["saes"][0]["hook"] == "blocks.1.hook_resid_mid"  # encoded from the input hook
    f = max(range(tc.cfg.d_sae), key=lambda j: store.feature_row(j)["fires"])
    top = store.top_contexts(f, 3)
    c = top[0]
    ids = torch.tensor([c.token_ids if hasattr(c, "token_ids") else
                        [r["token"] for r in store.query(
                            "SELECT token FROM {tokens} WHERE context = " + str(c.context) + " ORDER BY position")]])
    _, cache = model.run_with_cache(ids, names_filter="blocks.1.hook_resid_mid")
    direct = tc.encode(cache["blocks.1.hook_resid_mid"][0])[:, f]
    assert c.values[1:] == pytest.approx(direct[1:].tolist(), abs=1e-4)  # the store holds the input-side code
    d = feature_dashboard(store, f)
    assert d.top and d.top_logits  # logit effects through W_dec then the unembedding
    tset = load_set(tmp_path / "set")  # graph labels: layer 1 from the store, layer 0 (not in it) falls back
    peak = repr(top[0].tokens[top[0].max_position])
    assert store.set_labels(tset, [[1, 3, f], [0, 3, f]], ["a", "b"]) == [f"L1#{f} " + store.label(f), "b"]
    assert store.label(f).startswith(peak)
    assert store.set_labels(tset, [[1, 3, f], [1, 4, f]], ["a", "b"], only=[1]) == ["a", f"L1#{f} " + store.label(f)]
    # steering clamps the feature on the MLP's output: y' = y + (v − f_j(x)) W_dec,j, input untouched
    v = 3.0
    with torch.no_grad():
        _, clean = model.run_with_cache(ids, names_filter=lambda n: n in ("blocks.1.hook_resid_mid",
                                                                          "blocks.1.hook_mlp_out"))
        hooks = steering_hooks(tc, f, v, "clamp")
        seen = {}
        hooks.append(("blocks.1.hook_mlp_out", lambda y, hook: seen.__setitem__("y", y)))
        model.run_with_hooks(ids, fwd_hooks=hooks)
    fj = tc.encode(clean["blocks.1.hook_resid_mid"][0])[:, f]
    want = clean["blocks.1.hook_mlp_out"][0] + (v - fj)[:, None] * tc.W_dec[f]
    torch.testing.assert_close(seen["y"][0], want, rtol=1e-4, atol=1e-4)


def test_the_cli_trains_and_evaluates_a_set_and_refuses_bad_input_in_one_line(corpus, tmp_path):
    from tests.test_cli import assert_one_line_error, run_json

    base = ("sae", "train", "--model", "tiny-llama", "--corpus", corpus, "--d-sae", "64", "--k", "4",
            "--tokens", "512", "--batch-size", "128")
    out = run_json(*base, "--transcoder", "--layers", "0-2", "--out", str(tmp_path / "set"))
    assert out["transcoder"] and out["layers"] == [0, 1, 2] and [p["layer"] for p in out["per_layer"]] == [0, 1, 2]
    fvus = [p["fvu"] for p in out["per_layer"]]  # the set's final: the mean and the worst, not layer 0's
    assert out["final"]["fvu"] == pytest.approx(sum(fvus) / 3) and out["final"]["worst_fvu"] == max(fvus)
    assert out["final"]["worst_fvu_layer"] == fvus.index(max(fvus))
    ev = run_json("sae", "eval", str(tmp_path / "set"), "--model", "tiny-llama", "--corpus", corpus, "--tokens", "256",
                  "--no-per-layer")
    assert ev["source"] == "interp" and len(ev["layers"]) == 3 and 0 <= ev["top1_agreement"] <= 1
    from safetensors.torch import load_file

    from tests.test_cli import run_in_process

    weights = tmp_path / "set" / "layer_1" / "sae_weights.safetensors"  # layer 1 now misses by far more than its mean
    w = load_file(weights)
    save_file({**w, "b_dec": w["b_dec"] + 100.0}, weights)
    code, text, err = run_in_process("sae", "eval", str(tmp_path / "set"), "--model", "tiny-llama", "--corpus", corpus,
                                     "--tokens", "256", "--no-per-layer", "--force")
    assert code == 0 and text.count("CE recovered alone skipped (--no-per-layer)") == 3 and "nan" not in text
    warned = [line for line in err.splitlines() if line.startswith("interp: warning: held-out FVU above 1")]
    again = run_json("sae", "eval", str(tmp_path / "set"), "--model", "tiny-llama", "--corpus", corpus, "--tokens",
                     "256", "--no-per-layer")
    above = [f["layer"] for f in again["layers"] if f["fvu"] > 1]
    assert len(warned) == 1 and 1 in above and [int(n) for n in re.findall(r"(\d+) \(", warned[0])] == above, err
    assert_one_line_error(*base, "--transcoder", "--layers", "0-7", "--out", str(tmp_path / "x"), message="out of range")
    assert_one_line_error(*base, "--transcoder", "--layers", "1-a", "--out", str(tmp_path / "x"),
                          message="not a list of layers")
    assert_one_line_error(*base, "--transcoder", "--layers", "0", "--hook", "blocks.{l}.hook_resid_post",
                          "--out", str(tmp_path / "x"), message="MLP's input")
    assert_one_line_error(*base, "--layers", "0-1", "--hook", "blocks.1.hook_resid_post", "--out", str(tmp_path / "x"),
                          message="template")
    assert_one_line_error(*base, "--transcoder", "--layers", "0-2", "--k", "5", "--out", str(tmp_path / "set"),
                          message="different run")
    assert not (tmp_path / "x").exists()
    assert_one_line_error("sae", "eval", str(tmp_path / "set"), "--model", "tiny-gpt2", "--corpus", corpus,
                          message="trained on")


def test_two_gloo_processes_train_the_same_set_as_one(tiny_models, corpus, tmp_path):
    from tests.conftest import run_ddp_worker

    cfg = TrainConfig(hook=IN, hook_out=OUT, layers=[0, 1, 2], architecture="topk", d_sae=128, k=8, tokens=256 * 8,
                      batch_size=256, seq_len=32, block_rows=32, corpus=corpus, lr=1e-3, log_every=4,
                      checkpoint_every=4, max_norm_ratio=0.0)
    single = train(tiny_models["tiny-llama"], cfg, tmp_path / "single")
    proc = run_ddp_worker(tmp_path / "ddp", corpus, "transcoders", port=29534)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_set(tmp_path / "ddp")
    for layer in (0, 1, 2):
        ref = single.layers[layer]
        ref_saved = load_sae_roundtrip(ref)
        for name in ("W_enc", "W_dec", "b_enc", "b_dec", "W_skip"):  # equal up to the order of the gradient sums
            a, b = getattr(ddp[layer], name), getattr(ref_saved, name)
            assert (a - b).abs().max() < 1e-4 and (a - b).norm() / b.norm().clamp_min(1e-12) < 1e-5, (layer, name)
