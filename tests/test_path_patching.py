import pytest
import torch

from interp import InterpError
from interp.metrics import make_task, metric_per_pair
from interp.circuits.path_patching import path_patch, path_patch_sweep
from tests.conftest import EIFFEL

COLOSSEUM = "The Colosseum is located in the city of"


def _sender_write(model, task, sender):
    """Δ the sender head writes into the residual stream: (z_clean − z_corrupt)_h W_O^h."""
    l, h = sender
    name = f"blocks.{l}.attn.hook_z"
    with torch.no_grad():
        _, clean = model.run_with_cache(task.clean, names_filter=name)
        _, corrupt = model.run_with_cache(task.corrupt, names_filter=name)
    delta = (clean[name][:, :, h] - corrupt[name][:, :, h]) @ model.W_O[l, h]
    if hasattr(model.blocks[l], "ln1_post"):  # Gemma: the sender's layer post-norm sees its whole new sum
        post = f"blocks.{l}.ln1_post.hook_in"
        with torch.no_grad():
            _, cache = model.run_with_cache(task.corrupt, names_filter=post)
            x = cache[post]
            return model.blocks[l].ln1_post(x + delta) - model.blocks[l].ln1_post(x)
    return delta


def test_logits_path_with_frozen_mlps_is_the_direct_effect(tiny):
    """Reference: add the sender's write to the corrupt run's final residual stream and
    decode it with the final norm and unembedding by hand."""
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    sender = (1, 2)
    value = path_patch(tiny, task, [sender], "logits", freeze_mlps=True)
    with torch.no_grad():
        _, cache = tiny.run_with_cache(task.corrupt, names_filter="ln_final.hook_in")
        resid = cache["ln_final.hook_in"] + _sender_write(tiny, task, sender)
        logits = tiny.unembed(tiny.ln_final(resid))
    expected = metric_per_pair(logits[:, -1], task.answer, task.wrong, "logit_diff").mean().item()
    assert value == pytest.approx(expected, abs=1e-4)


def test_query_path_with_frozen_mlps(tiny):
    """Reference: the receiver's query computed from weights, norm(resid_pre + Δ) W_Q (+ b_Q),
    patched into the corrupt run by hand."""
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    sender, (rl, rh) = (0, 1), (2, 3)
    value = path_patch(tiny, task, [sender], [(rl, rh)], "q", freeze_mlps=True)
    with torch.no_grad():
        _, cache = tiny.run_with_cache(task.corrupt)
        # Frozen heads and MLPs: the receiver's input differs only by the sender's write.
        resid = cache[f"blocks.{rl}.hook_resid_pre"] + _sender_write(tiny, task, sender)
        normed = tiny.blocks[rl].ln1(resid)
        q = torch.einsum("bpm,md->bpd", normed, tiny.W_Q[rl, rh])
        try:
            q = q + tiny.b_Q[rl, rh]
        except AttributeError:  # bias-free (Llama)
            pass

        def patch(x, *, hook):
            x = x.clone()
            x[:, :, rh] = q
            return x

        logits = tiny.run_with_hooks(task.corrupt, fwd_hooks=[(f"blocks.{rl}.attn.hook_q", patch)])
    expected = metric_per_pair(logits[:, -1], task.answer, task.wrong, "logit_diff").mean().item()
    assert value == pytest.approx(expected, abs=1e-4)


def test_sweep_equals_single_calls(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    sweep = path_patch_sweep(tiny, task, [(2, 0)], "v", rows_per_pass=3)
    assert sweep.axes == ("layer", "head") and torch.isnan(sweep.values[2]).all()
    for l in range(2):
        for h in range(tiny.cfg.n_heads):
            assert sweep.values[l, h].item() == pytest.approx(path_patch(tiny, task, [(l, h)], [(2, 0)], "v"), abs=1e-5)


def test_all_senders_to_logits_through_everything_restores_clean(tiny):
    """Every head patched, MLPs recomputing: the only remaining difference is the MLPs'
    and embeddings' own reading of the corrupt tokens... so check the direction: it moves
    towards clean from corrupt."""
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    heads = [(l, h) for l in range(tiny.cfg.n_layers) for h in range(tiny.cfg.n_heads)]
    sweep = path_patch_sweep(tiny, task, "logits")
    assert torch.isfinite(sweep.values).all()
    assert path_patch(tiny, task, [], "logits") == pytest.approx(sweep.corrupt_baseline, abs=1e-5)
    assert path_patch(tiny, task, heads, "logits") != pytest.approx(sweep.corrupt_baseline, abs=1e-4)


def test_bad_paths(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    with pytest.raises(InterpError, match="not before the first receiver layer 1: no path"):
        path_patch(tiny, task, [(1, 0)], [(1, 2)], "q")
    with pytest.raises(InterpError, match="sender head 9 is out of range"):
        path_patch(tiny, task, [(0, 9)], "logits")
    with pytest.raises(InterpError, match="receiver input must be q, k or v"):
        path_patch(tiny, task, [(0, 1)], [(2, 0)], "z")
