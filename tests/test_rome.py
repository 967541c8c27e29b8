"""ROME: key statistics, the rank-one update, reversible edits, bad requests."""

import pytest
import torch
from torch import nn

from interp.knowledge import covariance, rome
from interp.corpus import token_rows
from interp.errors import InterpError
from tests.conftest import EIFFEL

TEMPLATE = "{} is located in the city of"
FAST = rome.RomeConfig(cov_tokens=2048, corpus="bbc-news", n_prefixes=4, v_steps=5)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path / "cache"))


def test_key_moment_equals_naive_second_moment(tiny):
    stats = covariance.key_moment(tiny, 1, "bbc-news", tokens=1024, seq_len=128, batch_size=3)
    keys = []
    for row in token_rows(tiny, "bbc-news", 1024, 128):  # one forward per row, all layers
        _, cache = tiny.run_with_cache(row[None], names_filter=covariance.key_hook(1))
        keys.append(cache[covariance.key_hook(1)][0])
    K = torch.cat(keys).double()
    torch.testing.assert_close(stats.C.double(), K.T @ K / K.shape[0], rtol=1e-5, atol=1e-6)
    again = covariance.key_moment(tiny, 1, "bbc-news", tokens=1024, seq_len=128)
    assert again.cached and torch.equal(again.C.cpu(), stats.C.cpu().float())


def test_corrupt_or_stale_statistics_are_rebuilt(tiny, capsys):
    first = covariance.key_moment(tiny, 0, "bbc-news", tokens=512, seq_len=128)
    first.path.write_bytes(b"garbage")
    rebuilt = covariance.key_moment(tiny, 0, "bbc-news", tokens=512, seq_len=128)
    assert not rebuilt.cached and "unreadable" in capsys.readouterr().err
    torch.testing.assert_close(rebuilt.C, first.C)
    from safetensors.torch import save_file

    save_file({"C": first.C.cpu() * float("nan")}, str(first.path), metadata={"manifest": "{}"})
    covariance.key_moment(tiny, 0, "bbc-news", tokens=512, seq_len=128)
    assert "stale" in capsys.readouterr().err


def test_killed_statistics_job_resumes(tiny, monkeypatch):
    full = covariance.key_moment(tiny, 1, "bbc-news", tokens=1024, seq_len=128, batch_size=1)
    full.path.unlink()
    monkeypatch.setattr(covariance, "_CHECKPOINT_EVERY", 1)
    real = covariance.token_rows

    def dies_after_five(*args, **kwargs):
        for i, row in enumerate(real(*args, **kwargs)):
            if i == 5:
                raise KeyboardInterrupt
            yield row

    monkeypatch.setattr(covariance, "token_rows", dies_after_five)
    with pytest.raises(KeyboardInterrupt):
        covariance.key_moment(tiny, 1, "bbc-news", tokens=1024, seq_len=128, batch_size=1)
    assert full.path.with_suffix(".partial.safetensors").exists() and not full.path.exists()
    skipped = []
    monkeypatch.setattr(covariance, "token_rows", lambda *a, **k: (skipped.append(k["skip_rows"]), real(*a, **k))[1])
    resumed = covariance.key_moment(tiny, 1, "bbc-news", tokens=1024, seq_len=128, batch_size=1)
    assert skipped == [5]
    torch.testing.assert_close(resumed.C, full.C, rtol=1e-6, atol=1e-7)


def test_default_layer_caches_only_the_shipped_facts(tiny_models):
    """A layer chosen from a caller's facts is never cached as the model's default."""
    model = tiny_models["tiny-llama"]
    path = rome.cache_dir("rome") / f"{rome.slug(model.cfg.model_name)}-layer.json"
    facts = [{"template": "{} is located in the city of", "subject": "The Eiffel Tower", "answer": " Paris"}]
    picked = rome.default_layer(model, facts)
    assert 0 <= picked["layer"] < model.cfg.n_layers and len(picked["effect"]) == model.cfg.n_layers
    assert not path.exists()


def test_rank_one_update_on_hand_set_weights():
    torch.manual_seed(0)
    d_mlp, d_model = 12, 5
    for layer in (nn.Linear(d_mlp, d_model, bias=False), _conv1d(d_mlp, d_model)):
        A = torch.randn(d_mlp, 3 * d_mlp)
        C = A @ A.T / A.shape[1]
        k, v = torch.randn(d_mlp), torch.randn(d_model)
        other_key = torch.randn(d_mlp)
        with torch.no_grad():
            exact = layer.weight.detach().clone()
            probe = _clone(layer)
            rome._apply(probe, rome.rank_one_update(probe, C, k, v, k_exact=other_key))
            torch.testing.assert_close(probe(other_key[None])[0], v, rtol=1e-5, atol=1e-5)
            assert torch.equal(layer.weight, exact)
        dW = rome.rank_one_update(layer, C, k, v)
        assert torch.linalg.matrix_rank(dW).item() == 1
        W = layer.weight.detach().clone()
        rome._apply(layer, dW)
        with torch.no_grad():
            torch.testing.assert_close(layer(k[None])[0], v, rtol=1e-5, atol=1e-5)  # W'k* = v*
            # Keys C⁻¹-orthogonal to k* keep their outputs (ROME Eq. 2's constraint).
            u = torch.linalg.solve(C, k)
            other = torch.randn(d_mlp)
            other -= (u @ other) / (u @ u) * u
            old = other @ (W.T if isinstance(layer, nn.Linear) else W)
            bias = layer.bias if layer.bias is not None else 0
            torch.testing.assert_close(layer(other[None])[0] - bias, old, rtol=1e-4, atol=1e-5)


def _clone(layer):
    import copy

    return copy.deepcopy(layer)


def _conv1d(d_in, d_out):
    from transformers.pytorch_utils import Conv1D

    c = Conv1D(d_out, d_in)
    nn.init.normal_(c.weight)
    nn.init.normal_(c.bias)
    return c


@pytest.mark.parametrize("update_key", ["mean", "prompt"])
def test_edit_writes_v_star_and_undoes_bit_exactly(tiny, update_key):
    from dataclasses import replace

    W_out = rome.out_proj(tiny, 1)
    before = {n: p.detach().clone() for n, p in tiny.named_parameters()}
    e = rome.edit(tiny, TEMPLATE, "The Eiffel Tower", " Rome", layer=1, config=replace(FAST, update_key=update_key))
    assert rome.edits(tiny) == [e] and e.active and rome.is_edited(tiny)
    bare = rome.compute_key(tiny, 1, [EIFFEL], "The Eiffel Tower")
    torch.testing.assert_close(e.k_exact, e.k_star if update_key == "mean" else bare)
    with torch.no_grad():  # W'k = v* for the key the update targets: k* (Eq. 2) or the prompt's own
        torch.testing.assert_close(W_out(e.k_exact[None])[0].float(), e.v_star, rtol=1e-4, atol=1e-4)
    changed = [n for n, p in tiny.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == 1 and changed[0].endswith("weight")  # only W_out of layer 1
    e.undo()
    assert not rome.edits(tiny) and not e.active
    assert all(torch.equal(p, before[n]) for n, p in tiny.named_parameters())
    e.undo()  # a second undo is a no-op


def test_key_is_the_mean_over_prompts_of_a_naive_loop(tiny):
    texts = [EIFFEL, "Once upon a time. " + EIFFEL, "Hi. " + EIFFEL]
    k = rome.compute_key(tiny, 1, texts, "The Eiffel Tower")
    keys = []
    for t in texts:
        _, cache = tiny.run_with_cache(t, names_filter=covariance.key_hook(1), prepend_bos=tiny.cfg.default_prepend_bos)
        last = rome.subject_span(tiny, t, "The Eiffel Tower")[1] - 1
        keys.append(cache[covariance.key_hook(1)][0, last])
    torch.testing.assert_close(k, torch.stack(keys).mean(0), rtol=1e-5, atol=1e-6)


def test_context_manager_and_stacked_edits(tiny):
    W = rome.out_proj(tiny, 1).weight.detach().clone()
    with rome.edit(tiny, TEMPLATE, "The Eiffel Tower", " Rome", layer=1, config=FAST) as first:
        second = rome.edit(tiny, "{} is a", "Tiger Woods", " golfer Rome", layer=1, config=FAST)
        assert [e.subject for e in rome.edits(tiny)] == ["The Eiffel Tower", "Tiger Woods"]
        with pytest.raises(InterpError, match="later edit"):
            first.undo()
        assert not first.active and second.active  # the second edit rewrote the same weights
        second.undo()
        assert first.active
    assert torch.equal(rome.out_proj(tiny, 1).weight, W) and not rome.edits(tiny)


def test_undo_refuses_when_weights_changed_behind_its_back(tiny):
    e = rome.edit(tiny, TEMPLATE, "The Eiffel Tower", " Rome", layer=1, config=FAST)
    W = rome.out_proj(tiny, 1).weight
    with torch.no_grad():
        W[0, 0] += 1.0
    assert not e.active
    with pytest.raises(InterpError, match="changed since the edit"):
        e.undo()
    with torch.no_grad():
        W[0, 0] -= 1.0
        W.copy_(e._original)  # clean up by hand for the other tests
    rome.edits(tiny).clear()


def test_statistics_refuse_an_edited_model(tiny):
    with rome.edit(tiny, TEMPLATE, "The Eiffel Tower", " Rome", layer=1, config=FAST):
        with pytest.raises(InterpError, match="carries ROME edits"):
            covariance.key_moment(tiny, 0, "bbc-news", tokens=256, seq_len=128)


def test_diverging_optimisation_leaves_weights_untouched(tiny):
    W = rome.out_proj(tiny, 1).weight.detach().clone()
    with pytest.raises(InterpError, match="diverged"):
        rome.edit(tiny, TEMPLATE, "The Eiffel Tower", " Rome", layer=1,
                  config=rome.RomeConfig(cov_tokens=2048, corpus="bbc-news", n_prefixes=2, v_lr=1e30, v_steps=5,
                                         clamp_norm_factor=float("inf"), v_weight_decay=0.0))
    assert torch.equal(rome.out_proj(tiny, 1).weight, W) and not rome.edits(tiny)


@pytest.mark.parametrize("prompt, subject, target, layer, message", [
    ("Paris has many towers", "The Louvre", " Rome", 1, "is not in the prompt"),
    ("The Eiffel Tower is located in", "The Eiffel Tower", " Rome", 1, "write it as the template '{} is located in'"),
    ("{} and {} are in", "The Eiffel Tower", " Rome", 1, "exactly once"),
    (TEMPLATE, "The Eiffel Tower", " Rome", 99, "layer 99 is out of range"),
    (TEMPLATE, "The Eiffel Tower", "", 1, "empty target"),
    (TEMPLATE, " ", " Rome", 1, "empty subject"),
])
def test_bad_requests(tiny, prompt, subject, target, layer, message):
    W = rome.out_proj(tiny, 1).weight.detach().clone()
    with pytest.raises(InterpError, match=message.replace("{", r"\{").replace("}", r"\}")):
        rome.edit(tiny, prompt, subject, target, layer=layer, config=FAST)
    assert not rome.edits(tiny) and torch.equal(rome.out_proj(tiny, 1).weight, W)


def test_target_equal_to_current_answer(tiny):
    current = tiny.tokenizer.decode(rome.greedy(tiny, EIFFEL, 1))
    with pytest.raises(InterpError, match="already completes"):
        rome.edit(tiny, TEMPLATE, "The Eiffel Tower", current, layer=1, config=FAST)


@pytest.mark.slow
def test_edit_on_the_embedded_model(smol):
    """A multi-token rewrite at layer 4 (the peak MLP effect): the model says the new object,
    the KL prompt barely moves, and undo restores the exact weights."""
    from interp.knowledge.counterfact import target_probs

    config = rome.RomeConfig(cov_tokens=20_000)
    W = rome.out_proj(smol, 4).weight.detach().clone()
    before = target_probs(smol, [EIFFEL], [" New York", " Paris"])[0]
    with rome.edit(smol, TEMPLATE, "The Eiffel Tower", " New York", layer=4, config=config) as e:
        after = target_probs(smol, [EIFFEL], [" New York", " Paris"])[0]
        assert after[0] > after[1] and after[0] > 10 * before[0]
        assert e.stats["target_nll"] < e.stats["nll_history"][0] and e.stats["key_residual"] < 1e-4
        assert smol.tokenizer.decode(rome.greedy(smol, EIFFEL, 2)) == " New York"
        louvre = target_probs(smol, ["The Louvre is located in the city of"], [" New York", " Paris"])[0]
        assert louvre[1] > louvre[0]  # a neighbour keeps its answer
    assert torch.equal(rome.out_proj(smol, 4).weight, W)
