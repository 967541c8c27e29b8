"""Weight-space circuits against direct dense computations, on hand-set weights and on the tiny
GQA Llama (whose K/V heads are expanded independently here, from the Hugging Face weights)."""

from __future__ import annotations

import math

import pytest
import torch

from interp.circuits import weights as W
from interp.errors import InterpError


def _hand_set(n_layers=2, n_heads=3, d=12, h=4, vocab=20, seed=0) -> W.HeadWeights:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return W.HeadWeights(r(n_layers, n_heads, d, h), r(n_layers, n_heads, d, h), r(n_layers, n_heads, d, h),
                         r(n_layers, n_heads, h, d), r(vocab, d), r(d, vocab), False, True, 10000.0)


def _dense_stats(m: torch.Tensor) -> tuple[float, float]:
    d = m.shape[0]
    off = m[~torch.eye(d, dtype=torch.bool)]
    return (torch.trace(m) / (math.sqrt(d) * m.norm())).item(), ((m.diag().mean() - off.mean()) / off.std(unbiased=False)).item()


def test_identity_stats_equal_the_dense_formulas():
    hw = _hand_set()
    for l in range(2):
        for h in range(3):
            for m in (hw.qk(l, h), hw.ov(l, h)):
                got, ref = W.identity_stats(m.A, m.B), _dense_stats(m.AB.double())
                assert got == pytest.approx(ref, rel=1e-6, abs=1e-9)
    eye = torch.eye(6)
    assert W.identity_stats(eye, 2 * eye)[0] == pytest.approx(1.0)
    assert W.identity_stats(eye, -eye)[0] == pytest.approx(-1.0)
    mim = W.mimetic_stats(hw)
    layer_qk = sum(hw.qk(1, h).AB for h in range(3)).double()  # the layer's circuit: the sum over heads
    assert mim.layer["qk_cos"][1].item() == pytest.approx(_dense_stats(layer_qk)[0], rel=1e-6)
    assert mim.head["ov_z"][0, 2].item() == pytest.approx(_dense_stats(hw.ov(0, 2).AB.double())[1], rel=1e-5)


def test_composition_scores_equal_the_textbook_form():
    hw = _hand_set()
    comp = W.composition_scores(hw, baseline_samples=8)
    n = 3
    for a, b in [(0, 3), (1, 5), (2, 4)]:  # writer in layer 0, reader in layer 1
        la, ha, lb, hb = a // n, a % n, b // n, b % n
        ov_a = hw.ov(la, ha).AB.double()
        qk_b, ov_b = hw.qk(lb, hb).AB.double(), hw.ov(lb, hb).AB.double()
        assert comp.scores["q"][a, b].item() == pytest.approx(W.composition_score(ov_a, qk_b), rel=1e-5)
        assert comp.scores["k"][a, b].item() == pytest.approx(W.composition_score(ov_a, qk_b.T), rel=1e-5)
        assert comp.scores["v"][a, b].item() == pytest.approx(W.composition_score(ov_a, ov_b), rel=1e-5)
    assert comp.scores["q"][3, 0].isnan() and comp.scores["k"][0, 1].isnan()  # same layer or backwards: none
    assert all(0 < m < 1 and s > 0 for m, s in comp.baseline.values())


def test_copying_score_equals_the_dense_eigenvalues():
    hw = _hand_set()
    got = W.copying_scores(hw)
    for l, h in [(0, 0), (1, 2)]:
        full = (hw.W_E @ hw.W_V[l, h] @ hw.W_O[l, h] @ hw.W_U).double()  # vocab × vocab
        lam = torch.linalg.eigvals(full)
        assert got[l, h].item() == pytest.approx((lam.sum().real / lam.abs().sum()).item(), abs=1e-6)
    # a head that copies: W_V W_O = W_E⁺-like identity on the embedding space gives +1
    e = torch.eye(20)[:, :12]
    z = torch.zeros(1, 1, 12, 4)
    hw2 = W.HeadWeights(z, z, torch.eye(12)[None, None, :, :4].expand(1, 1, 12, 4).clone(),
                        torch.eye(12)[None, None, :4, :].clone(), e, e.T.clone(), False, False, None)
    assert W.copying_scores(hw2)[0, 0].item() == pytest.approx(1.0)


@pytest.mark.parametrize("k", [1, 3])
def test_copying_rate_counts_own_logits_in_the_top_k_by_a_naive_loop(k):
    hw = _hand_set(vocab=30, seed=4)
    ids = [3, 7, 11, 12, 19, 25, 28]
    got = W.copying_rate(hw, ids, k)
    for l in range(2):
        for h in range(3):
            hits = 0
            for t in ids:  # read token t through the head; rank its own logit among the words' logits
                logits = {u: float(hw.W_E[t] @ hw.W_V[l, h] @ hw.W_O[l, h] @ hw.W_U[:, u]) for u in ids}
                above = sum(1 for u in ids if logits[u] > logits[t])
                hits += above < k
            assert got[l, h].item() == pytest.approx(hits / len(ids))
    e = torch.eye(20)[:, :12]  # the identity head of the test above copies every word
    hw2 = W.HeadWeights(*(torch.zeros(1, 1, 12, 4),) * 2, torch.eye(12)[None, None, :, :4].clone(),
                        torch.eye(12)[None, None, :4, :].clone(), e, e.T.clone(), False, False, None)
    assert W.copying_rate(hw2, [0, 1, 2, 3], 1).item() == 1.0
    for bad, match in (([1], "two distinct"), ([1, 1], "two distinct")):
        with pytest.raises(InterpError, match=match):
            W.copying_rate(hw, bad)
    with pytest.raises(InterpError, match="k = 7"):
        W.copying_rate(hw, ids, 7)


def test_full_circuits_on_a_token_subset():
    hw = _hand_set()
    toks = [3, 7, 11]
    qk = W.full_circuit(hw, "qk", 1, 2, toks)
    ov = W.full_circuit(hw, "ov", 1, 2, toks)
    e = hw.W_E[toks]
    assert torch.allclose(qk, e @ hw.W_Q[1, 2] @ hw.W_K[1, 2].T @ e.T, atol=1e-4)
    assert torch.allclose(ov, e @ hw.W_V[1, 2] @ hw.W_O[1, 2] @ hw.W_U[:, toks], atol=1e-4)
    with pytest.raises(InterpError, match="layer 2 is out of range"):
        W.full_circuit(hw, "qk", 2, 0, toks)
    with pytest.raises(InterpError, match="head 3 is out of range"):
        W.full_circuit(hw, "ov", 0, 3, toks)


def test_ov_promotes_is_the_top_of_the_full_ov_row():
    """Each attended token's top-k output logits over the whole vocabulary: every kept logit equals the
    full OV circuit's entry, and no left-out token scores higher (a loop over the vocabulary)."""
    hw = _hand_set()
    toks = [3, 7]
    values, ids = W.ov_promotes(hw, 1, 2, toks, k=4)
    assert values.shape == ids.shape == (2, 4)
    for row, t in enumerate(toks):
        full = [W.full_circuit(hw, "ov", 1, 2, [t, j])[0, 1].item() for j in range(hw.W_U.shape[1])]
        assert values[row].tolist() == pytest.approx([full[j] for j in ids[row].tolist()], abs=1e-4)
        left_out = [v for j, v in enumerate(full) if j not in ids[row].tolist()]
        assert max(left_out) <= values[row].min().item() + 1e-5
    with pytest.raises(InterpError, match="empty"):
        W.ov_promotes(hw, 0, 0, [])


def test_rope_rotation_matches_the_models_rotary_embedding():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    d_head, base = 16, 10000.0
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 1, 12, d_head, generator=g), torch.randn(1, 1, 12, d_head, generator=g)
    inv = 1.0 / base ** (torch.arange(0, d_head, 2).float() / d_head)
    freqs = torch.arange(12).float()[:, None] * inv[None]
    emb = torch.cat([freqs, freqs], -1)
    qr, kr = apply_rotary_pos_emb(q, k, emb.cos()[None], emb.sin()[None])
    for m, n in [(5, 4), (9, 2), (3, 3), (2, 7)]:
        rot = W.rope_rotation(d_head, n - m, base)
        assert (qr[0, 0, m] @ kr[0, 0, n]).item() == pytest.approx((q[0, 0, m] @ rot @ k[0, 0, n]).item(), abs=1e-4)


def test_gqa_expansion_and_folding_on_the_tiny_llama(tiny_models):
    model = tiny_models["tiny-llama"]
    hf = model.original_model.model.layers[1]
    n_heads, n_kv, d_head = model.cfg.n_heads, model.cfg.n_key_value_heads, model.cfg.d_head
    raw, folded = W.head_weights(model), W.head_weights(model, fold=True)
    k_proj = hf.self_attn.k_proj.weight.detach()  # [n_kv * d_head, d_model]
    for i in range(n_heads):
        j = i // (n_heads // n_kv)  # the KV head query head i reads (the model's repeat_kv)
        assert torch.allclose(raw.W_K[1, i], k_proj[j * d_head:(j + 1) * d_head].T)
    g = hf.input_layernorm.weight.detach()
    assert torch.allclose(folded.W_Q[1], raw.W_Q[1] * g[None, :, None])
    assert torch.allclose(folded.W_U, raw.W_U * model.original_model.model.norm.weight.detach()[:, None])
    comp = W.composition_scores(raw, baseline_samples=4)
    a, b = 2, 1 * n_heads + 3  # L0H2 writes, L1H3 reads through KV head 1
    ref = W.composition_score(raw.ov(0, 2).AB.double(),
                              (raw.W_Q[1, 3] @ k_proj[d_head:2 * d_head]).double().T)
    assert comp.scores["k"][a, b].item() == pytest.approx(ref, rel=1e-5)
    assert raw.rotary and raw.rope_base == pytest.approx(10000.0)


def test_weights_verb_json_and_errors(capsys, tmp_path):
    import json

    from interp.cli import main

    def cli(*args):
        code = main([*args, "--json"])
        cap = capsys.readouterr()
        return code, (json.loads(cap.out) if code == 0 else None), cap.err

    code, out, _ = cli("weights", "--model", "tiny-llama", "--stat", "qk", "--layer", "1", "--head", "3",
                       "--offset", "-1", "--tokens", " the, of, Paris", "--html", str(tmp_path / "qk.html"))
    assert code == 0 and out["axes"]["full"] == ["query", "key"] and len(out["full"]) == 3
    assert len(out["singular_values"]) == 16 and (tmp_path / "qk.html").is_file()
    code, out, _ = cli("weights", "--model", "tiny-llama", "--stat", "composition", "--top", "3")
    assert code == 0 and len(out["heads"]) == 12 and len(out["scores"]["k"]) == 12 and len(out["top"]["q"]) == 3
    code, out, _ = cli("weights", "--model", "tiny-llama", "--stat", "mimetic", "--fold")
    assert code == 0 and out["folded"] and len(out["layer"]["qk_cos"]) == 3 and len(out["head"]["ov_z"][0]) == 4
    code, out, _ = cli("weights", "--model", "tiny-llama", "--stat", "copying")
    assert code == 0 and len(out["copying"]) == 3 and all(-1 <= v <= 1 for row in out["copying"] for v in row)
    for args, message in [(("--stat", "ov", "--layer", "3", "--head", "0"), "layer 3 is out of range"),
                          (("--stat", "qk", "--layer", "0", "--head", "4"), "head 4 is out of range"),
                          (("--stat", "qk",), "give --layer and --head")]:
        code, _, err = cli("weights", "--model", "tiny-llama", *args)
        lines = [l for l in err.splitlines() if l.startswith("interp:")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err
