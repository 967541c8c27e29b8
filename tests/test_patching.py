import itertools

import pytest
import torch
from transformer_lens import patching as tl_patching

from interp import InterpError
from interp.metrics import make_task, metric_per_pair
from interp.circuits.patching import SITES, grid_shape, patch_sweep
from tests.conftest import EIFFEL

COLOSSEUM = "The Colosseum is located in the city of"
PAIRS = ([EIFFEL, "The Louvre Museum is located in the city of"],
         [COLOSSEUM, "The Kremlin Palace is located in the city of"])


def naive_sweep(model, task, site, direction, metric="logit_diff"):
    """One patch per forward: the reference the batched sweep must equal."""
    spec = SITES[site]
    base, src = (task.corrupt, task.clean) if direction == "denoise" else (task.clean, task.corrupt)
    with torch.no_grad():
        _, cache = model.run_with_cache(src)
    shape = grid_shape(model, spec, base.shape[1])
    out = torch.zeros(shape)
    for cell in itertools.product(*map(range, shape)):
        name = f"blocks.{cell[0]}.{spec.hook}"

        def hook(x, *, hook, cell=cell, name=name):
            x, s = x.clone(), cache[name]
            if spec.axes == ("layer", "pos"):
                x[:, cell[1]] = s[:, cell[1]]
            elif len(cell) == 3 and spec.pattern:
                x[:, cell[2], cell[1]] = s[:, cell[2], cell[1]]
            elif len(cell) == 3:
                x[:, cell[1], cell[2]] = s[:, cell[1], cell[2]]
            elif spec.pattern:
                x[:, cell[1]] = s[:, cell[1]]
            else:
                x[:, :, cell[1]] = s[:, :, cell[1]]
            return x

        with torch.no_grad():
            logits = model.run_with_hooks(base, fwd_hooks=[(name, hook)])
        out[cell] = metric_per_pair(logits[:, -1], task.answer, task.wrong, metric).mean()
    return out


@pytest.mark.parametrize("direction", ["denoise", "noise"])
@pytest.mark.parametrize("site", list(SITES))
def test_batched_sweep_equals_naive_loop(tiny, site, direction):
    task = make_task(tiny, *PAIRS, " Paris", " Rome")
    result = patch_sweep(tiny, task, site, direction, max_cells_per_chunk=7)  # several chunks
    reference = naive_sweep(tiny, task, site, direction)
    assert result.values.shape == reference.shape and result.axes == SITES[site].axes
    assert torch.allclose(result.values, reference, atol=1e-4)
    assert reference.std() > 1e-4  # the patches really change the metric


def test_baselines_and_normalisation(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    result = patch_sweep(tiny, task, "resid_pre")
    with torch.no_grad():
        clean = tiny(task.clean)[0, -1]
        corrupt = tiny(task.corrupt)[0, -1]
    a, w = task.answer[0], task.wrong[0]
    assert result.clean_baseline == pytest.approx((clean[a] - clean[w]).item(), abs=1e-5)
    assert result.corrupt_baseline == pytest.approx((corrupt[a] - corrupt[w]).item(), abs=1e-5)
    norm = result.normalized()
    assert torch.allclose(norm, (result.values - result.corrupt_baseline)
                          / (result.clean_baseline - result.corrupt_baseline))
    # At layer 0 the residual stream is the embedding: where the two prompts share a
    # token (and position), patching it changes nothing.
    same = (task.clean[0] == task.corrupt[0]).nonzero().flatten()
    assert len(same) > 0 and torch.allclose(norm[0, same], torch.zeros(len(same)), atol=1e-4)
    differ = (task.clean[0] != task.corrupt[0]).nonzero().flatten()
    assert norm[0, differ].abs().max() > 1e-3


def test_prob_metric(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    result = patch_sweep(tiny, task, "mlp_out", metric="prob")
    assert torch.allclose(result.values, naive_sweep(tiny, task, "mlp_out", "denoise", "prob"), atol=1e-7)
    assert 0 < result.values.min() and result.values.max() < 1


def test_batch_of_pairs_is_the_mean_of_single_pairs(tiny):
    both = patch_sweep(tiny, make_task(tiny, *PAIRS, " Paris", " Rome"), "attn_out")
    singles = [patch_sweep(tiny, make_task(tiny, c, k, " Paris", " Rome"), "attn_out").values
               for c, k in zip(*PAIRS)]
    assert torch.allclose(both.values, (singles[0] + singles[1]) / 2, atol=1e-5)


TL_EQUIVALENTS = {
    "resid_pre": ("get_act_patch_resid_pre", None),
    "attn_out": ("get_act_patch_attn_out", None),
    "mlp_out": ("get_act_patch_mlp_out", None),
    "head_out": ("get_act_patch_attn_head_out_by_pos", None),
    "head_out_all": ("get_act_patch_attn_head_out_all_pos", None),
    "q": ("get_act_patch_attn_head_q_by_pos", None),
    "k": ("get_act_patch_attn_head_k_by_pos", None),
    "v_all": ("get_act_patch_attn_head_v_all_pos", None),
    "pattern": ("get_act_patch_attn_head_pattern_by_pos", (0, 2, 1)),  # TL: layer head dest_pos
    "pattern_all": ("get_act_patch_attn_head_pattern_all_pos", None),
}


@pytest.mark.parametrize("site", list(TL_EQUIVALENTS))
def test_equals_transformerlens_patching(tiny, site):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    fn, perm = TL_EQUIVALENTS[site]
    a, w = task.answer[0].item(), task.wrong[0].item()
    with torch.no_grad():
        _, clean_cache = tiny.run_with_cache(task.clean)
        theirs = getattr(tl_patching, fn)(tiny, task.corrupt, clean_cache,
                                          lambda logits: logits[0, -1, a] - logits[0, -1, w])
    theirs = theirs.permute(*perm) if perm else theirs
    assert torch.allclose(patch_sweep(tiny, task, site).values, theirs.cpu(), atol=1e-4)


@pytest.mark.slow
def test_embedded_model_equals_transformerlens(smol):
    """On the real model, against TransformerLens's own generic patcher, on every 3rd cell."""
    import pandas as pd

    task = make_task(smol, EIFFEL, COLOSSEUM, " Paris", " Rome")
    ours = patch_sweep(smol, task, "resid_pre")
    cells = [(l, p) for l in range(0, 30, 3) for p in range(len(task.clean_tokens))]
    a, w = task.answer[0].item(), task.wrong[0].item()
    with torch.no_grad():
        _, clean_cache = smol.run_with_cache(task.clean)
        theirs = tl_patching.generic_activation_patch(
            smol, task.corrupt, clean_cache, lambda lg: lg[0, -1, a] - lg[0, -1, w],
            tl_patching.layer_pos_patch_setter, "resid_pre",
            index_df=pd.DataFrame(cells, columns=["layer", "pos"]))
    mine = torch.stack([ours.values[l, p] for l, p in cells])
    assert torch.allclose(mine, theirs.cpu(), atol=1e-3)
    # The fact moves from the subject to the last position: early layers need the subject's
    # last token, late layers the final position.
    norm = ours.normalized()
    subject = slice(1, 4)  # ' E', 'iffel', ' Tower'
    assert norm[5, subject].max() > 0.7 and norm[5, -1].abs() < 0.2  # the subject carries it early
    assert norm[28, -1] > 0.8 and norm[28, subject].abs().max() < 0.2  # the last position late


def test_different_lengths_show_both_token_lists(tiny):
    with pytest.raises(InterpError, match=r"clean \[.*' Tower'.*\] \(\d+ tokens\) vs corrupt \[.*\] \(\d+ tokens\)"):
        make_task(tiny, EIFFEL, "The Vatican is located in the city of", " Paris", " Rome")


def test_multi_token_answer(tiny):
    with pytest.raises(InterpError, match="answer ' New York' is 2 tokens"):
        make_task(tiny, EIFFEL, COLOSSEUM, " New York", " Rome")


def test_identical_prompts_and_same_answer_are_refused_up_front(tiny):
    with pytest.raises(InterpError, match="clean and corrupt prompts are identical"):
        make_task(tiny, EIFFEL, EIFFEL, " Paris", " Rome")
    with pytest.raises(InterpError, match="the answer and the wrong token are the same"):
        make_task(tiny, EIFFEL, COLOSSEUM, " Rome", " Rome")


def test_normalisation_refuses_a_gap_of_batching_noise_and_warns_when_small(capsys):
    """The gap of identical prompts batched differently is ~1e-5 logits (4.812362 vs 4.812350), which
    the old relative 1e-6 threshold let through as a heatmap of noise / noise."""
    from interp.metrics import normalize

    with pytest.raises(InterpError, match="same metric"):
        normalize(torch.tensor([4.8123]), 4.812362, 4.812350)
    torch.testing.assert_close(normalize(torch.tensor([1.0, 1.05]), 1.05, 1.0), torch.tensor([0.0, 1.0]))
    assert "differ by only 0.05" in capsys.readouterr().err
    normalize(torch.tensor([1.0]), 3.0, 1.0)
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_answer_without_its_leading_space_gets_a_hint(smol, capsys):
    from interp.metrics import warn_missing_space
    from interp.tokens import to_tokens

    said = warn_missing_space(smol, to_tokens(smol, EIFFEL), ["Paris", " Rome"])
    assert len(said) == 1 and "did you mean ' Paris'" in said[0] and said[0] in capsys.readouterr().err


def test_unknown_site(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    with pytest.raises(InterpError, match="unknown site 'resid_post'; choose one of resid_pre"):
        patch_sweep(tiny, task, "resid_post")


def test_out_of_memory_falls_back_to_smaller_chunks(tiny, capsys):
    """A chunk that cannot fit raises OOM inside the forward; the sweep halves and retries."""
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    limit = 9  # rows this 'device' can hold at the last layer

    def refuse_big(x, *, hook):
        if x.shape[0] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated device limit)")
        return x

    tiny.add_hook("blocks.2.hook_resid_post", refuse_big)
    try:
        result = patch_sweep(tiny, task, "resid_pre")
    finally:
        tiny.reset_hooks()
    assert "out of memory" in capsys.readouterr().err
    assert result.extra["cells_per_pass"] <= limit - 1
    assert torch.allclose(result.values, naive_sweep(tiny, task, "resid_pre", "denoise"), atol=1e-4)


def test_memory_budget_sets_chunking(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    small = patch_sweep(tiny, task, "head_out", memory_budget=3e6)
    big = patch_sweep(tiny, task, "head_out")
    assert small.extra["cells_per_pass"] < big.extra["cells_per_pass"]
    assert torch.allclose(small.values, big.values, atol=1e-5)
