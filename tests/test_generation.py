"""Cached generation under hooks equals the uncached loop, token for token, with and without hooks."""

import pytest
import torch

from benchmarks.generation import uncached as uncached_greedy  # the reference: a full forward per new token
from interp.errors import InterpError
from interp.generation import generate, generate_ids

PROMPTS = ["The Eiffel Tower is located in the city of", "Hello", "My favourite food is a big bowl of", "Rome is"]


def test_cached_batched_greedy_equals_the_uncached_loop(tiny):
    ref = [uncached_greedy(tiny, p, 10) for p in PROMPTS]
    assert generate_ids(tiny, PROMPTS, 10, stop_at_eos=False) == ref  # left-padded batch, KV cache
    assert generate_ids(tiny, PROMPTS, 10, stop_at_eos=False, batch_size=1) == ref
    assert generate_ids(tiny, PROMPTS, 10, stop_at_eos=False, use_cache=False) == ref


def test_a_residual_hook_applies_to_every_new_position(tiny):
    v = 4 * torch.randn(tiny.cfg.d_model, generator=torch.Generator().manual_seed(1))
    seen = []

    def add(resid, *, hook):
        seen.append(resid.shape[1])
        return resid + v

    with tiny.hooks(fwd_hooks=[("blocks.1.hook_resid_post", add)]):
        ref = [uncached_greedy(tiny, p, 8) for p in PROMPTS]
        seen.clear()
        got = generate_ids(tiny, PROMPTS, 8, stop_at_eos=False)
    assert got == ref
    assert seen[1:] == [1] * 7  # prefill once, then one position per step
    assert generate_ids(tiny, PROMPTS, 8, stop_at_eos=False) != ref  # the hook is gone, and it mattered


def test_sampling_is_seeded_per_prompt_whatever_shares_the_batch(tiny):
    both = generate_ids(tiny, ["Hello", PROMPTS[0]], 6, mode="sample", seed=5)
    alone = generate_ids(tiny, ["Hello"], 6, mode="sample", seed=5)
    assert both[0] == alone[0]
    assert generate_ids(tiny, ["Hello"], 6, mode="sample", seed=6) != alone  # another seed, another draw


def test_top_k_one_sampling_is_greedy(tiny):
    assert generate_ids(tiny, PROMPTS, 6, mode="sample", top_k=1, stop_at_eos=False) == \
        generate_ids(tiny, PROMPTS, 6, stop_at_eos=False)


def test_rows_stop_at_eos_and_keep_it(tiny):
    eos = tiny.tokenizer.eos_token_id
    full = generate_ids(tiny, PROMPTS, 12, stop_at_eos=False)
    stopped = generate_ids(tiny, PROMPTS, 12)
    for f, s in zip(full, stopped):
        assert s == (f[:f.index(eos) + 1] if eos in f else f)
    assert isinstance(generate(tiny, "Hello", 3), str) and len(generate(tiny, ["Hello", "Rome is"], 3)) == 2


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": 0}, "max_new_tokens must be a positive integer"),
    ({"mode": "beam"}, "generation mode 'beam'"),
    ({"temperature": 0.0}, "temperature must be positive"),
    ({"batch_size": -1}, "batch_size must be a positive integer"),
])
def test_bad_settings_get_one_line(tiny_models, kwargs, message):
    with pytest.raises(InterpError, match=message):
        generate_ids(tiny_models["tiny-llama"], ["Hello"], **{"max_new_tokens": 3, **kwargs})


def test_a_prompt_too_long_for_the_context_is_refused(tiny_models):
    model = tiny_models["tiny-gpt2"]
    with pytest.raises(InterpError, match="exceeds the model's context"):
        generate_ids(model, ["word " * model.cfg.n_ctx], 5)


@pytest.mark.slow
def test_embedded_model_cached_greedy_equals_uncached_under_a_steering_hook(smol):
    v = 3 * torch.randn(smol.cfg.d_model, generator=torch.Generator().manual_seed(0))
    with smol.hooks(fwd_hooks=[("blocks.3.hook_resid_post", lambda r, *, hook: r + v)]):
        ref = [uncached_greedy(smol, p, 8) for p in PROMPTS[:3]]
        assert generate_ids(smol, PROMPTS[:3], 8, stop_at_eos=False) == ref
    assert generate(smol, PROMPTS[0], 2) == " Paris,"
