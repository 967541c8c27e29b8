import json

import pytest
import torch

from interp import InterpError
from interp.architectures import sliding_windows
from interp.knowledge.tracing import fill_template, load_facts, subject_span, trace, trace_loop
from interp.tokens import single_token, to_tokens
from tests.conftest import EIFFEL


@pytest.mark.parametrize("trim", [True, False], ids=["trimmed", "whole-sequence"])
@pytest.mark.parametrize("kind", ["hidden", "mlp", "attn"])
def test_batched_trace_equals_rome_loop(tiny, kind, trim):
    fast = trace(tiny, EIFFEL, "The Eiffel Tower", " Paris", kinds=[kind], samples=3, window=2,
                 memory_budget=2e5, trim=trim)  # several passes
    ref = trace_loop(tiny, EIFFEL, "The Eiffel Tower", " Paris", kinds=[kind], samples=3, window=2)
    windowed = any(sliding_windows(tiny))  # a sliding-window KV cache cannot be a prefix: whole sequences
    assert fast.extra["cells_per_pass"] < fast.scores[kind].numel() and fast.extra["trimmed"] == (trim and not windowed)
    assert torch.allclose(fast.scores[kind], ref.scores[kind], atol=1e-6, rtol=1e-4)
    assert fast.corrupt_prob == pytest.approx(ref.corrupt_prob, rel=1e-4)
    assert fast.scores[kind].std() > 0


def test_bottom_edge_cells_branch_off_the_longest_window():
    """Window 10 over 30 layers: the MLP cells at layers 0…4 of a token restore blocks 0…l+4, a prefix
    of layer 5's window, so they copy layer 5's rows at block l+5 and restore nothing themselves."""
    from interp.knowledge.tracing import _batched_restores, _branch

    cells = [("mlp", 3, l) for l in range(8)] + [("hidden", 3, 0)]
    restores = [_batched_restores(k, t, l, 10, 30) for k, t, l in cells]
    starts = [min(int(h.split(".")[1]) for h, _ in r) for r in restores]
    order, new_starts, sources, own = _branch(cells, starts, restores)
    by_cell = {order[i]: (new_starts[i], sources[i], own[i]) for i in range(len(order))}
    trunk = order.index(5)
    for l in range(5):
        assert by_cell[l] == (l + 5, trunk, [])
    assert by_cell[5] == (0, None, restores[5]) and by_cell[6][1] is None and by_cell[8][1] is None
    assert new_starts == sorted(new_starts)


@pytest.mark.parametrize("kind", ["mlp", "attn"])
def test_branched_trace_in_one_pass_equals_rome_loop(tiny, kind):
    """Three layers, window 2: layer 0's cell restores block 0 only, a prefix of layer 1's window, so it
    runs as a branch of layer 1's rows when both are in one pass."""
    fast = trace(tiny, EIFFEL, "The Eiffel Tower", " Paris", kinds=[kind], samples=3, window=2, trim=False)
    ref = trace_loop(tiny, EIFFEL, "The Eiffel Tower", " Paris", kinds=[kind], samples=3, window=2)
    assert fast.extra["cells_per_pass"] >= fast.scores[kind].numel()
    assert torch.allclose(fast.scores[kind], ref.scores[kind], atol=1e-6, rtol=1e-4)


def test_trace_reference_semantics(tiny):
    """Restoring the whole last position's residual stream at the last layer gives back the
    clean probability; restoring a token before the subject changes nothing."""
    prompt = "Yesterday the Eiffel Tower was in the city of"
    result = trace(tiny, prompt, "the Eiffel Tower", " Paris", kinds=["hidden"], samples=4)
    hidden = result.scores["hidden"]
    assert hidden[-1, -1].item() == pytest.approx(result.clean_prob, rel=1e-4)
    start = result.subject_range[0]
    assert start > 0 and torch.allclose(hidden[:start], torch.full_like(hidden[:start], result.corrupt_prob), rtol=1e-4)


def test_same_seed_same_trace_and_noise_scale(tiny):
    a = trace(tiny, EIFFEL, "The Eiffel Tower", kinds=["mlp"], samples=3, seed=7)
    b = trace(tiny, EIFFEL, "The Eiffel Tower", kinds=["mlp"], samples=3, seed=7)
    c = trace(tiny, EIFFEL, "The Eiffel Tower", kinds=["mlp"], samples=3, seed=8)
    assert torch.equal(a.scores["mlp"], b.scores["mlp"]) and not torch.equal(a.scores["mlp"], c.scores["mlp"])
    # 3σ of the embeddings as the residual stream receives them (Gemma scales W_E by √d_model)
    _, cache = tiny.run_with_cache(to_tokens(tiny, EIFFEL), names_filter="hook_embed")
    assert 1.0 < a.noise_scale / cache["hook_embed"][0].std().item() < 6.0  # σ measured on a sample


def test_subject_span_from_character_offsets(tiny_models):
    gpt2, llama = tiny_models["tiny-gpt2"], tiny_models["tiny-llama"]
    # ' E' 'iffel' ' Tower' whatever the tokenization; BOS shifts the span by one.
    assert subject_span(llama, EIFFEL, "Eiffel Tower") == (1, 4)
    assert subject_span(gpt2, EIFFEL, "Eiffel Tower") == (2, 5)
    assert subject_span(llama, EIFFEL, "iffel") == (2, 3)  # inside a token's neighbourhood


def test_bad_inputs(tiny):
    with pytest.raises(InterpError, match="subject 'Big Ben' is not in the prompt"):
        trace(tiny, EIFFEL, "Big Ben")
    with pytest.raises(InterpError, match="has no '\\{\\}'"):
        fill_template("is located in", "x")
    with pytest.raises(InterpError, match="unknown trace kind 'mlps'"):
        trace(tiny, EIFFEL, "The Eiffel Tower", kinds=["mlps"])
    with pytest.raises(InterpError, match="is 2 tokens"):
        trace(tiny, EIFFEL, "The Eiffel Tower", answer=" New York")


def test_facts_file_format(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text(json.dumps({"facts": [{"template": "{} is in", "subject": "X", "answer": " Y"}]}))
    assert load_facts(str(path))[0]["subject"] == "X"
    path.write_text('{"facts": [{"template": "{} is in"}]}')
    with pytest.raises(InterpError, match="needs template, subject and answer"):
        load_facts(str(path))


@pytest.mark.slow
def test_shipped_facts_are_known_by_the_embedded_model(smol):
    facts = load_facts()
    assert len(facts) >= 20
    with torch.no_grad():
        for f in facts:
            logits = smol(to_tokens(smol, fill_template(f["template"], f["subject"])))[0, -1]
            assert int(logits.argmax()) == single_token(smol, f["answer"]), f


def test_a_listener_sees_the_trace_progress_from_start_to_end(tiny, monkeypatch):
    """The explorer draws its bar from interp.progress.listening: every redraw reaches it, counting up to
    the total, and an estimate line (forced here by a zero threshold) reaches it too."""
    import interp.progress as progress_mod

    monkeypatch.setattr(progress_mod, "ESTIMATE_OVER", 0.0)
    monkeypatch.delenv("INTERP_PROGRESS", raising=False)
    events = []
    with progress_mod.listening(events.append):
        trace(tiny, EIFFEL, "The Eiffel Tower", samples=2)
    bars = [e for e in events if "n" in e]
    assert bars and bars[-1]["n"] == bars[-1]["total"] > 0
    assert [e["n"] for e in bars] == sorted(e["n"] for e in bars)
    assert all(e["elapsed"] >= 0 for e in bars)
    assert [e["estimate"][:12] for e in events if "estimate" in e] == ["causal trace"]
    events.clear()
    trace(tiny, EIFFEL, "The Eiffel Tower", samples=2)  # outside the block: nobody is told
    assert events == []
