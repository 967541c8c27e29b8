import math

import pytest
import torch

from interp.circuits.attribution import agreement, attribution_sweep
from interp.metrics import make_task, metric_per_pair
from interp.circuits.patching import SITES, patch_sweep
from tests.conftest import EIFFEL

COLOSSEUM = "The Colosseum is located in the city of"


def _grads_by_textbook(model, task):
    """∂m/∂a for every hook through TransformerLens's own backward hooks (dir="bwd"):
    an independent path from ours (which uses torch.autograd.grad on kept activations)."""
    cache = {}
    names = [n for n in model.hook_dict if n.startswith("blocks.")]
    wanted = {f"blocks.{l}.{h}" for l in range(model.cfg.n_layers) for h in
              ("hook_resid_pre", "hook_attn_out", "hook_mlp_out", "attn.hook_z", "attn.hook_q",
               "attn.hook_k", "attn.hook_v", "attn.hook_pattern")}

    def fwd(x, *, hook, name):
        cache[name] = x.detach()

    def bwd(grad, *, hook, name):
        cache[name + "_grad"] = grad.detach()

    model.zero_grad(set_to_none=True)
    try:
        for name in wanted:
            model.add_hook(name, lambda x, hook, name=name: fwd(x, hook=hook, name=name))
            model.add_hook(name, lambda g, hook, name=name: bwd(g, hook=hook, name=name), dir="bwd")
        with torch.enable_grad():
            logits = model(task.corrupt)
            m = metric_per_pair(logits[:, -1], task.answer, task.wrong, "logit_diff").mean()
            m.backward()
    finally:
        model.reset_hooks(including_permanent=False)
        model.zero_grad(set_to_none=True)
    assert names and all(n + "_grad" in cache for n in wanted)
    return m.item(), cache


@pytest.mark.parametrize("site", ["resid_pre", "attn_out", "mlp_out", "head_out", "v", "pattern"])
def test_atp_is_the_first_order_formula(tiny, site):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    atp = attribution_sweep(tiny, task, sites=[site])[site]
    m_corrupt, cache = _grads_by_textbook(tiny, task)
    with torch.no_grad():
        _, clean = tiny.run_with_cache(task.clean)
    hook = SITES[site].hook
    for layer in range(tiny.cfg.n_layers):
        name = f"blocks.{layer}.{hook}"
        prod = (clean[name] - cache[name]) * cache[name + "_grad"]
        if site == "pattern":
            expected = prod.sum((0, 3)).T  # dest_pos head
        elif prod.dim() == 4:
            expected = prod.sum((0, 3))  # pos head
        else:
            expected = prod.sum((0, 2))  # pos
        assert torch.allclose(atp.values[layer] - m_corrupt, expected, atol=1e-5), (site, layer)
    assert atp.corrupt_baseline == pytest.approx(m_corrupt, abs=1e-5)


@pytest.mark.parametrize("site,layer,pos,head", [("q", 1, 5, 2), ("k", 2, 4, 1)])
def test_atp_star_qk_is_exact_through_the_softmax(tiny, site, layer, pos, head):
    """AtP* for a q or k patch: the attention pattern is recomputed exactly. Reference:
    actually run the model with that q/k entry patched, read the new pattern, and take
    Δpattern · ∂m/∂pattern (only the pattern → metric step is linear)."""
    if site == "k":
        head = min(head, (tiny.cfg.n_key_value_heads or tiny.cfg.n_heads) - 1)
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    atp = attribution_sweep(tiny, task, sites=[site])[site]
    _, cache = _grads_by_textbook(tiny, task)
    with torch.no_grad():
        _, clean = tiny.run_with_cache(task.clean)
    name = f"blocks.{layer}.attn.hook_{site}"

    def patch(x, *, hook):
        x = x.clone()
        x[:, pos, head] = clean[name][:, pos, head]
        return x

    pat = f"blocks.{layer}.attn.hook_pattern"
    with torch.no_grad(), tiny.hooks(fwd_hooks=[(name, patch)]):
        _, patched = tiny.run_with_cache(task.corrupt, names_filter=pat)
    assert not torch.allclose(patched[pat], cache[pat])
    expected = ((patched[pat] - cache[pat]) * cache[pat + "_grad"]).sum()
    estimate = atp.values[layer, pos, head] - atp.corrupt_baseline
    assert estimate.item() == pytest.approx(expected.item(), abs=1e-5)


def test_agreement_statistics_against_textbook_formulas(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    exact = patch_sweep(tiny, task, "head_out")
    atp = attribution_sweep(tiny, task, sites=["head_out"])["head_out"]
    ag = agreement(exact, atp, k=5)
    a = (exact.values - exact.corrupt_baseline).flatten().tolist()
    b = (atp.values - exact.corrupt_baseline).flatten().tolist()
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    r = cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    assert ag.pearson_r == pytest.approx(r, abs=1e-9)
    top = lambda v: set(sorted(range(len(v)), key=lambda i: -abs(v[i]))[:5])  # noqa: E731
    assert ag.top_k_overlap == len(top(a) & top(b)) / 5
    # AtP tracks exact head patching on these models; less closely through Gemma's post-attention norm,
    # whose scale moves with every head's output (one of the tiny model's four heads is a large share of it)
    assert ag.pearson_r > (0.5 if hasattr(tiny.blocks[0], "ln1_post") else 0.8)
