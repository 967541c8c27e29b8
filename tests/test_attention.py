import math

import pytest
import torch

from interp import InterpError, attention_patterns, detect_heads
from interp.circuits.attention import repeated_random_tokens
from interp.tokens import to_tokens
from tests.conftest import EIFFEL


def _manual_pattern(model, tokens, layer):
    """softmax(q kᵀ / √d_head) with a causal mask, from the cached (rotated) q and k; on a sliding-window
    layer (read from the Hugging Face config's own ``layer_types``) a query sees its last ``window`` keys."""
    rotary = model.cfg.positional_embedding_type == "rotary"
    names = [f"blocks.{layer}.attn.hook_{'rot_q' if rotary else 'q'}",
             f"blocks.{layer}.attn.hook_{'rot_k' if rotary else 'k'}"]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    q, k = cache[names[0]][0], cache[names[1]][0]  # pos head d_head
    group = q.shape[1] // k.shape[1]  # GQA: each KV head serves `group` query heads
    k = k.repeat_interleave(group, dim=1)
    config = model.original_model.config
    scale = getattr(config, "query_pre_attn_scalar", None) or q.shape[-1]
    scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(scale)
    pos = scores.shape[-1]
    mask = torch.triu(torch.ones(pos, pos, dtype=torch.bool), diagonal=1)
    if getattr(config, "layer_types", None) and config.layer_types[layer] == "sliding_attention":
        i, j = torch.arange(pos)[:, None], torch.arange(pos)[None, :]
        mask |= i - j >= config.sliding_window
    return scores.masked_fill(mask, float("-inf")).softmax(-1)


def test_patterns_match_manual_softmax(tiny):
    result = attention_patterns(tiny, EIFFEL)
    tokens = to_tokens(tiny, EIFFEL)
    assert result.pattern.shape == (tiny.cfg.n_layers, tiny.cfg.n_heads, tokens.shape[1], tokens.shape[1])
    for layer in range(tiny.cfg.n_layers):
        assert torch.allclose(result.pattern[layer], _manual_pattern(tiny, tokens, layer), atol=1e-5)
    assert len(result.tokens) == tokens.shape[1]
    config = tiny.original_model.config
    if getattr(config, "sliding_window", None):  # Gemma 3: the windowed layers are named as such
        assert result.windows == [config.sliding_window if t == "sliding_attention" else None
                                  for t in config.layer_types]
        assert "sliding window" in result.figure(0, 0).layout.title.text
    else:
        assert result.windows == [None] * tiny.cfg.n_layers


def test_single_layer_and_head(tiny):
    full = attention_patterns(tiny, EIFFEL)
    one = attention_patterns(tiny, EIFFEL, layer=1, head=2)
    assert one.pattern.shape[:2] == (1, 1) and one.layers == [1] and one.heads == [2]
    assert torch.allclose(one.pattern[0, 0], full.pattern[1, 2])


@pytest.mark.parametrize("layer,head,what", [(3, 0, "layer 3"), (0, 4, "head 4"), (-9, 0, "layer -9")])
def test_out_of_range(tiny, layer, head, what):
    with pytest.raises(InterpError, match=f"{what} is out of range"):
        attention_patterns(tiny, EIFFEL, layer=layer, head=head)


def test_detectors_match_naive_loop(tiny):
    n_seqs, seq_len = 3, 12
    result = detect_heads(tiny, n_seqs=n_seqs, seq_len=seq_len, seed=1)
    tokens = repeated_random_tokens(tiny, n_seqs, seq_len, seed=1)
    off = tokens.shape[1] - 2 * seq_len
    with torch.no_grad():
        logits, cache = tiny.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    for layer in range(tiny.cfg.n_layers):
        pat = cache[f"blocks.{layer}.attn.hook_pattern"]
        for head in range(tiny.cfg.n_heads):
            prev, dup, ind = [], [], []
            for b in range(n_seqs):
                for i in range(off + 1, tokens.shape[1]):
                    prev.append(pat[b, head, i, i - 1].item())
                for i in range(off + seq_len + 1, off + 2 * seq_len):
                    # the earlier copy of token i, and the token after it
                    j = next(j for j in range(off, i) if tokens[b, j] == tokens[b, i])
                    dup.append(pat[b, head, i, j].item())
                    ind.append(pat[b, head, i, j + 1].item())
            for name, ref in (("previous", prev), ("duplicate", dup), ("induction", ind)):
                assert result.scores[name][layer, head].item() == pytest.approx(sum(ref) / len(ref), abs=1e-6)
    # losses: naive per-token cross-entropy
    ce = torch.nn.functional.cross_entropy
    first = [ce(logits[b, i], tokens[b, i + 1]).item()
             for b in range(n_seqs) for i in range(off, off + seq_len - 1)]
    second = [ce(logits[b, i], tokens[b, i + 1]).item()
              for b in range(n_seqs) for i in range(off + seq_len, off + 2 * seq_len - 1)]
    assert result.loss_first_repeat == pytest.approx(sum(first) / len(first), rel=1e-5)
    assert result.loss_second_repeat == pytest.approx(sum(second) / len(second), rel=1e-5)


def test_detectors_find_hand_set_heads():
    """Detectors on patterns we set by hand through a hook: exact expected scores."""
    from interp.models import load_model

    model = load_model("tiny-llama", device="cpu")
    seq_len = 6

    def plant(pattern, *, hook):
        p = torch.zeros_like(pattern)
        pos = pattern.shape[-1]
        for i in range(pos):
            p[:, 0, i, max(i - 1, 0)] = 1.0  # head 0: previous token
            p[:, 1, i, i - seq_len + 1 if i >= seq_len else 0] = 1.0  # head 1: induction
            p[:, 2:, i, : i + 1] = 1.0 / (i + 1)  # others: uniform
        return p

    model.add_hook(lambda n: n == "blocks.1.attn.hook_pattern", plant)
    try:
        result = detect_heads(model, n_seqs=2, seq_len=seq_len)
    finally:
        model.reset_hooks()
    assert result.scores["previous"][1, 0] == pytest.approx(1.0)
    assert result.scores["induction"][1, 1] == pytest.approx(1.0)
    assert result.scores["induction"][1, 0] == pytest.approx(0.0)
    assert result.top("induction", 1)[0]["name"] == "L1H1"


@pytest.mark.slow
def test_embedded_induction_heads(smol):
    """The issue's measured facts: loss ~13 -> ~2 nats; L18H6 and L17H3-5 are induction heads."""
    result = detect_heads(smol)
    assert 12.0 < result.loss_first_repeat < 15.0 and 1.5 < result.loss_second_repeat < 2.5
    top = {h["name"]: h["score"] for h in result.top("induction", 6)}
    assert list(top)[0] == "L18H6" and top["L18H6"] > 0.85
    assert {"L17H3", "L17H4", "L17H5"} <= set(top)
    assert all(0.6 < top[h] < 0.9 for h in ("L17H3", "L17H4", "L17H5"))
    assert result.scores["induction"].shape == (30, 9)  # per query head under GQA


def test_a_grid_too_large_is_refused_before_the_forward(tiny, monkeypatch):
    """All layers and heads of a long prompt grow with its square; the size is checked up front
    (a 2,000-token prompt without --layer used to die of memory after 22 s)."""
    calls = []
    monkeypatch.setattr(tiny, "run_with_cache", lambda *a, **k: calls.append(1))
    prompt = " word" * 300
    n_layers, n_heads = tiny.cfg.n_layers, tiny.cfg.n_heads
    with pytest.raises(InterpError, match=r"pass --layer L \(and --head H\)"):
        attention_patterns(tiny, prompt, max_values=n_layers * n_heads * 300 ** 2 - 1)
    assert calls == []


def test_byte_level_tokens_show_their_bytes_not_replacement_characters(tiny):
    """CJK split into byte-level tokens used to show as '�' on every axis; each token now shows its
    bytes, and the bytes of all tokens, read back, are the text's UTF-8."""
    import codecs

    from interp.tokens import str_tokens

    text = "I love 🙂 and 東京"
    shown = str_tokens(tiny, to_tokens(tiny, text, prepend_bos=False)[0])
    assert "\ufffd" not in "".join(shown) and any("\\x" in s for s in shown)
    assert b"".join(codecs.escape_decode(s.encode())[0] for s in shown) == text.encode()


def test_attention_grid_tiles_are_the_patterns_and_clicks_name_heads(tiny_models):
    """Each thumbnail of the grid is its head's pattern (no pooling at this length), and the click
    markers sit on the tile centres with [layer, head] as their data, as on the detector heatmaps."""
    import numpy as np

    from interp.circuits.attention import attention_patterns, detect_heads
    from interp.figures import attention_grid_figure

    model = tiny_models["tiny-llama"]
    res = attention_patterns(model, "The cat sat on the mat")
    fig = attention_grid_figure(res)
    z, s = np.asarray(fig.data[0].z, dtype=float), len(res.tokens)
    for l in range(len(res.layers)):
        for h in range(len(res.heads)):
            tile = z[l * (s + 1):l * (s + 1) + s, h * (s + 1):h * (s + 1) + s]
            assert np.allclose(tile, res.pattern[l, h].numpy(), atol=1e-6)
    marks = fig.data[-1]
    i = 1 * len(res.heads) + 2
    assert list(marks.customdata[i]) == [1, 2]
    assert marks.x[i] == 2 * (s + 1) + (s - 1) / 2 and marks.y[i] == 1 * (s + 1) + (s - 1) / 2
    long = attention_grid_figure(attention_patterns(model, " ".join(["word"] * 40)), tile=8)
    assert np.asarray(long.data[0].z, dtype=float).shape == (len(res.layers) * 9, len(res.heads) * 9)
    heads = detect_heads(model, n_seqs=2, seq_len=8)
    scores = heads.figure()
    clicks = [t for t in scores.data if t.type == "scatter"]
    assert len(clicks) == 3 and list(clicks[0].customdata[5]) == [5 // 4, 5 % 4]
    # The markers carry the hover (so a click on the cell reaches them), with the cell's own score.
    assert clicks[0].text[5] == f"{heads.scores['induction'][1, 1].item():.3f}"
    assert all(t.hoverinfo == "skip" for t in scores.data if t.type == "heatmap")
