import pytest
import torch

from interp import InterpError, direct_logit_attribution, logit_lens
from interp.tokens import single_token, to_tokens
from tests.conftest import EIFFEL, TINY


def _true_logit_diff(model, prompt, a, b):
    with torch.no_grad():
        logits = model(to_tokens(model, prompt))[0, -1]
    return (logits[single_token(model, a)] - logits[single_token(model, b)]).item()


def _gain(bridge):
    """A norm's multiplier as its own module computes it: Gemma's RMSNorm scales by (1 + weight)."""
    norm = bridge._original_component
    ones = torch.ones(norm.weight.shape[0])
    return norm(ones[None]).squeeze(0) * torch.sqrt(ones.pow(2).mean() + getattr(norm, "eps", 0.0)) if "Gemma" in \
        type(norm).__name__ else norm.weight


def test_dla_parts_sum_to_logit_difference(tiny):
    dla = direct_logit_attribution(tiny, EIFFEL, " Paris", " Rome")
    assert dla.logit_diff == pytest.approx(_true_logit_diff(tiny, EIFFEL, " Paris", " Rome"), abs=1e-5)
    assert dla.total == pytest.approx(dla.logit_diff, abs=1e-3)
    assert dla.heads.shape == (tiny.cfg.n_layers, tiny.cfg.n_heads)
    assert dla.mlps.shape == (tiny.cfg.n_layers,)


def test_dla_head_part_is_the_head_through_the_frozen_norm(tiny):
    """One head's part equals the logit-diff change when only that head's output is
    removed and the final norm's scale is held at its cached value (a hand-rolled reference)."""
    layer, head = 1, 2
    dla = direct_logit_attribution(tiny, EIFFEL, " Paris", " Rome")
    tokens = to_tokens(tiny, EIFFEL)
    a, b = single_token(tiny, " Paris"), single_token(tiny, " Rome")
    with torch.no_grad():
        _, cache = tiny.run_with_cache(tokens)
        z = cache[f"blocks.{layer}.attn.hook_z"][0, -1, head]
        out = z @ tiny.W_O[layer, head]  # this head's write into the residual stream
        if hasattr(tiny.blocks[layer], "ln1_post"):  # Gemma: through the post-attention norm, its scale frozen
            out = out / cache[f"blocks.{layer}.ln1_post.hook_scale"][0, -1] * _gain(tiny.blocks[layer].ln1_post)
        resid = cache["ln_final.hook_in"][0, -1]
        scale = cache["ln_final.hook_scale"][0, -1]
        norm = tiny.ln_final._original_component

        def frozen_norm(x):
            x = x - x.mean() if isinstance(norm, torch.nn.LayerNorm) else x
            y = x / scale * _gain(tiny.ln_final)
            return y + norm.bias if getattr(norm, "bias", None) is not None else y

        def diff(x):
            logits = tiny.unembed(frozen_norm(x)[None, None])[0, 0]
            return (logits[a] - logits[b]).item()

        assert diff(resid) - diff(resid - out) == pytest.approx(dla.heads[layer, head].item(), abs=1e-5)


def test_lens_last_layer_is_the_model_output(tiny):
    lens = logit_lens(tiny, EIFFEL, " Paris", top_k=3)
    with torch.no_grad():
        probs = tiny(to_tokens(tiny, EIFFEL))[0, -1].softmax(-1)
    p = probs[single_token(tiny, " Paris")].item()
    assert lens.answer_prob[-1] == pytest.approx(p, rel=1e-4)
    assert lens.answer_rank[-1] == int((probs > p).sum())
    assert len(lens.layers) == tiny.cfg.n_layers + 1 and lens.layers[0] == "embed"
    assert lens.top_tokens[-1][0][0] == tiny.tokenizer.decode([int(probs.argmax())])


def test_lens_refuses_multi_token_answer(tiny):
    with pytest.raises(InterpError, match=r"answer ' San Francisco' is 2 tokens"):
        logit_lens(tiny, EIFFEL, " San Francisco")
    with pytest.raises(InterpError, match=r"wrong answer ' New York' is 2 tokens"):
        direct_logit_attribution(tiny, EIFFEL, " Paris", " New York")


@pytest.mark.slow
def test_embedded_lens_and_dla(smol):
    lens = logit_lens(smol, EIFFEL, " Paris")
    assert lens.answer_rank[-1] == 0 and lens.answer_prob[-1] > 0.6
    assert max(lens.answer_prob[:20]) < 0.01  # Paris only emerges in the upper layers
    dla = direct_logit_attribution(smol, EIFFEL, " Paris", " Rome")
    assert dla.total == pytest.approx(dla.logit_diff, abs=1e-3)
    assert dla.logit_diff == pytest.approx(_true_logit_diff(smol, EIFFEL, " Paris", " Rome"), abs=1e-4)


@pytest.mark.parametrize("name", TINY)
def test_dla_matches_transformerlens_compatibility_mode(name):
    """Against TransformerLens's own folding: with enable_compatibility_mode() the final
    norm's gain is folded into W_U (and W_O centred), so a head's part is simply
    z_h W_O^h · (W_U[:, a] - W_U[:, b]) / scale. Our unfolded computation must agree."""
    from interp.models import load_model

    ours = direct_logit_attribution(load_model(name, device="cpu"), EIFFEL, " Paris", " Rome")
    folded = load_model(name, device="cpu")
    folded.enable_compatibility_mode()
    with torch.no_grad():
        _, cache = folded.run_with_cache(to_tokens(folded, EIFFEL))
        z = torch.stack([cache[f"blocks.{l}.attn.hook_z"][0, -1] for l in range(folded.cfg.n_layers)])
        direction = folded.W_U[:, single_token(folded, " Paris")] - folded.W_U[:, single_token(folded, " Rome")]
        head_out = torch.einsum("lhd,lhdm->lhm", z, folded.W_O)
        if hasattr(folded.blocks[0], "ln1_post"):  # Gemma: the post-attention norm, scale frozen, is not folded
            post = torch.stack([_gain(folded.blocks[l].ln1_post) / cache[f"blocks.{l}.ln1_post.hook_scale"][0, -1]
                                for l in range(folded.cfg.n_layers)])
            head_out = head_out * post[:, None, :]
        heads = head_out @ direction / cache["ln_final.hook_scale"][0, -1]
    assert torch.allclose(heads, ours.heads, atol=1e-5)
