"""GCG on the tiny models: the one-hot gradient against the gradient through the embedding, a
loss that falls (best so far never rises), token filtering and bad input."""

from __future__ import annotations

import pytest
import torch

from interp import gcg as G
from interp.errors import InterpError

PROMPT = "The capital city of France is{optim} and the answer is"


def _layout(model, prompt=PROMPT, target=" Paris", init=" x x x x"):
    before, after = G._split(model, prompt, False)
    span = torch.tensor(model.tokenizer.encode(init, add_special_tokens=False))
    obj = G.target_objective(model, target)
    lay = G._Layout(G._encode(model, before, True), G._encode(model, after, False),
                    torch.tensor(model.tokenizer.encode(target, add_special_tokens=False)), len(span))
    return lay, span, obj


def test_onehot_gradient_equals_the_gradient_through_the_embedding(tiny):
    lay, span, obj = _layout(tiny)
    prefix, _ = G._prefix(tiny, lay.before)
    grad = G.onehot_gradient(tiny, lay, prefix, span, obj)
    emb = tiny.original_model.get_input_embeddings().weight
    e = emb[span].detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits, acts = G._forward(tiny, lay, G._prefix(tiny, lay.before)[0], embeds=e[None])
        (g_e,) = torch.autograd.grad(obj.loss(logits, acts, lay).sum(), e)
    torch.testing.assert_close(grad, g_e @ emb.detach().T, atol=1e-5, rtol=1e-4)
    # and the loss it differentiates is the loss of the token ids themselves
    with torch.no_grad():
        by_ids = obj.loss(*G._forward(tiny, lay, G._prefix(tiny, lay.before)[0], ids=span[None]), lay)
        full = torch.cat([lay.before, span, lay.after, lay.target])[None]
        ref = tiny(full)[0]
    n0 = len(lay.before) + lay.last_prompt
    ref_nll = torch.nn.functional.cross_entropy(ref[n0:n0 + len(lay.target)].float(), lay.target)
    assert by_ids.item() == pytest.approx(ref_nll.item(), abs=1e-4)


def test_gcg_lowers_the_target_loss_best_so_far(tiny_models):
    model = tiny_models["tiny-llama"]
    cfg = G.GCGConfig(steps=6, search_width=48, topk=24, optim_init=" x x x x", batch_size=48, early_stop=False)
    seen = []
    res = G.gcg(model, PROMPT, G.target_objective(model, " Paris"), cfg,
                on_step=lambda step, loss, best: seen.append((step, loss, best)))
    assert seen == list(zip(range(1, 7), res.losses, res.strings))  # the live curve sees every step
    assert len(res.losses) == 6 and all(b <= a + 1e-6 for a, b in zip(res.losses, res.losses[1:]))
    assert res.losses[-1] < res.extra["initial_loss"]
    assert res.best_loss == pytest.approx(min(res.step_losses + [res.extra["initial_loss"]]), abs=1e-6)
    tok = model.tokenizer
    assert tok.encode(res.best_string, add_special_tokens=False) == res.best_ids  # re-tokenises to itself
    fig = res.figure()  # the best-so-far line is the result's own losses
    assert list(fig.data[1].y) == res.losses and list(fig.data[0].y) == res.step_losses


def test_universal_and_direction_objectives(tiny_models):
    model = tiny_models["tiny-gpt2"]
    d = model.cfg.d_model
    neuron = torch.zeros(d)
    neuron[3] = 1.0
    obj = G.direction_objective("blocks.1.hook_resid_post", neuron, name="resid dim 3")
    cfg = G.GCGConfig(steps=4, search_width=32, topk=16, optim_init=" x x x", batch_size=32)
    res = G.gcg(model, ["Hello{optim} world", "One two{optim} three"], obj, cfg)
    assert res.losses[-1] <= res.extra["initial_loss"] and res.success is False


def test_allowed_tokens_and_bad_input(tiny_models):
    model = tiny_models["tiny-llama"]
    tok = model.tokenizer
    ok = G.allowed_tokens(tok)
    assert not any(ok[i] for i in tok.all_special_ids)
    assert all(tok.decode([i]).isascii() for i in ok.nonzero()[:500, 0].tolist())
    with pytest.raises(InterpError, match="tokenizes to nothing"):
        G.target_objective(model, "")
    with pytest.raises(InterpError, match=r"exactly one \{optim\}"):
        G.gcg(model, "no slot here", G.target_objective(model, " Paris"), G.GCGConfig(steps=1))
    with pytest.raises(InterpError, match="must not exceed the .* tokens left after filtering"):
        G.gcg(model, PROMPT, G.target_objective(model, " Paris"), G.GCGConfig(steps=1, search_width=10 ** 6))


def test_feature_objective_and_the_gcg_verb(tiny_models, capsys, tmp_path):
    import json

    from interp.cli import main
    from saes import SAEConfig, make_sae
    from saes.io import save_sae

    model = tiny_models["tiny-llama"]
    sae = make_sae(SAEConfig("relu", model.cfg.d_model, 32, hook_name="blocks.1.hook_resid_post"))
    with pytest.raises(InterpError, match="feature 32 is out of range"):
        G.feature_objective(sae, 32)
    obj = G.feature_objective(sae, 5)
    res = G.gcg(model, "{optim}", obj, G.GCGConfig(steps=3, search_width=24, topk=12, optim_init=" x x x"))
    assert res.losses[-1] <= res.extra["initial_loss"]
    save_sae(sae, tmp_path / "sae")
    code = main(["gcg", "--model", "tiny-llama", "--sae", str(tmp_path / "sae"), "--feature", "5", "--steps", "2",
                 "--search-width", "16", "--topk", "8", "--init", " x x", "--max-new-tokens", "2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["feature"] == 5 and out["pre_activation"] == pytest.approx(-out["best_loss"])
    assert out["activation"] >= 0 and out["prompt"] == "The"  # the default prompt, not null
    assert len(out["losses"]) == out["steps_run"] and out["best_suffix"] in out["filled_prompt"]
    code = main(["gcg", "--model", "tiny-llama", "--sae", str(tmp_path / "missing"), "--feature", "1", "--json"])
    err = capsys.readouterr().err
    assert code == 2 and "is not an SAE directory" in err


def test_fluency_sweep_marks_the_pareto_front(tiny_models):
    """Each λ's point carries its objective and fluency; ``pareto`` is true exactly for the points
    no other point beats on both (checked by the definition, pair by pair)."""
    model = tiny_models["tiny-llama"]
    d = model.cfg.d_model
    obj = G.direction_objective("blocks.2.hook_resid_post", torch.ones(d) / d ** 0.5, name="mean direction")
    cfg = G.GCGConfig(steps=2, search_width=16, topk=8, optim_init=" x x x", batch_size=16)
    points = G.fluency_sweep(model, "Hello{optim} world", obj, [0.0, 1.0, 10.0], cfg)
    assert [p["lambda"] for p in points] == [0.0, 1.0, 10.0]
    for p in points:
        beaten = any(q is not p and q["objective"] <= p["objective"] and q["fluency_nll"] <= p["fluency_nll"]
                     and (q["objective"], q["fluency_nll"]) != (p["objective"], p["fluency_nll"]) for q in points)
        assert p["pareto"] == (not beaten) and p["fluency_nll"] > 0
    assert any(p["pareto"] for p in points)
