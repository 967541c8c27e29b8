"""interp.capture: the activations run_with_cache gives, from a forward that stops at the last hook asked for."""

import pytest
import torch

from interp.capture import capture


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gemma3"])
def test_capture_equals_run_with_cache_and_runs_no_further_than_its_last_hook(tiny_models, name):
    model = tiny_models[name]
    tokens = torch.randint(0, 100, (2, 9), generator=torch.Generator().manual_seed(0))
    hooks = ["blocks.0.hook_resid_mid", "blocks.1.hook_mlp_out", "blocks.0.ln2.hook_out"]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in hooks)
    got = capture(model, tokens, hooks, keep=lambda x: x.clone())
    for h in hooks:
        torch.testing.assert_close(got[h], cache[h], rtol=0, atol=0)
    later = []
    model.add_hook("blocks.2.hook_resid_pre", lambda x, hook: later.append(1) or x)
    try:
        capture(model, tokens, hooks)
        assert later == []  # stopped after blocks.1's MLP: blocks 2 on and the unembedding never ran
        model(tokens)
        assert later == [1]  # the bridge's own hooks are still in place, and nothing of capture's is left
    finally:
        model.reset_hooks()
    assert len(capture(model, tokens, ["blocks.2.hook_resid_post"])["blocks.2.hook_resid_post"]) == 2
