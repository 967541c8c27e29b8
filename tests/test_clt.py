"""Cross-layer transcoders read and written exactly (issue 40): Gemma Scope 2's layout and circuit-tracer's,
every layer's file used, the affine skip kept, broken files refused in one line."""

import pytest
import torch
from safetensors.torch import load_file, save_file

from interp.errors import InterpError
from saes.clt import CrossLayerTranscoder, load_clt, save_circuit_tracer_clt, save_gemma_scope_clt

L, D, F = 3, 8, 12


def hand_set(skip: bool, seed: int = 0) -> CrossLayerTranscoder:
    g = torch.Generator().manual_seed(seed)
    clt = CrossLayerTranscoder(L, D, F, skip)
    with torch.no_grad():
        clt.W_enc.copy_(torch.randn(L, D, F, generator=g) / D ** 0.5)
        clt.b_enc.copy_(torch.randn(L, F, generator=g) * 0.1)
        clt.log_threshold.copy_((torch.rand(L, F, generator=g) * 0.4 + 0.05).log())
        for i in range(L):
            clt.W_dec[i].copy_(torch.randn(F, L - i, D, generator=g) * 0.3)
        clt.b_dec.copy_(torch.randn(L, D, generator=g) * 0.2)
        if skip:
            clt.W_skip.copy_(torch.randn(L, D, D, generator=g) * 0.1)
    return clt


def by_hand_gemma_scope(folder, xs):
    """Gemma Scope 2's formula in float64 from the files themselves: z = x w_enc + b_enc, f = z·1[z > θ],
    ŷ_l = Σ_{i ≤ l} f_i w_dec_i[:, l] + b_dec_l + x_l · skip_l."""
    files = [load_file(str(folder / f"params_layer_{i}.safetensors")) for i in range(L)]
    t = [{k: v.double() for k, v in f.items()} for f in files]
    feats = []
    for i in range(L):
        z = xs[i] @ t[i]["w_enc"] + t[i]["b_enc"]
        feats.append(z * (z > t[i]["threshold"]))
    out = []
    for layer in range(L):
        y = t[layer]["b_dec"] + sum(feats[i] @ t[i]["w_dec"][:, layer] for i in range(layer + 1))
        if "affine_skip_connection" in t[layer]:
            y = y + xs[layer] @ t[layer]["affine_skip_connection"]
        out.append(y)
    return out


@pytest.mark.parametrize("skip", [False, True])
def test_gemma_scope_layout_computes_the_formula_with_every_layer_file(tmp_path, skip):
    folder = save_gemma_scope_clt(hand_set(skip), tmp_path / "clt" / "width_12")
    clt = load_clt(folder)
    assert (clt.W_skip is not None) == skip
    xs = {i: torch.randn(50, D, generator=torch.Generator().manual_seed(i), dtype=torch.float64) for i in range(L)}
    got = clt.reconstruct({i: x.float() for i, x in xs.items()})
    want = by_hand_gemma_scope(folder, xs)
    for layer in range(L):
        torch.testing.assert_close(got[layer].double(), want[layer], rtol=1e-5, atol=1e-5)
    # the last layer's file carries its own decoder bias and its encoder: read it, or the result changes
    (folder / f"params_layer_{L - 1}.safetensors").unlink()
    with pytest.raises(InterpError, match=f"decoders write {L} layers, but {L - 1} layer files") as err:
        load_clt(folder)
    assert "\n" not in str(err.value)


def test_an_affine_clt_round_trips_through_circuit_tracers_layout_with_its_skip(tmp_path):
    clt = hand_set(True, seed=1)
    back = load_clt(save_circuit_tracer_clt(clt, tmp_path / "ct"))
    assert back.W_skip is not None
    xs = {i: torch.randn(20, D, generator=torch.Generator().manual_seed(10 + i)) for i in range(L)}
    want, got = clt.reconstruct(xs), back.reconstruct(xs)
    for layer in range(L):
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(back.W_skip, clt.W_skip, rtol=0, atol=0)
    again = load_clt(save_gemma_scope_clt(back, tmp_path / "gs"))  # and on into Gemma Scope 2's
    torch.testing.assert_close(again.reconstruct(xs)[L - 1], want[L - 1], rtol=1e-5, atol=1e-6)


def test_a_broken_clt_is_refused_in_one_line(tmp_path):
    folder = save_gemma_scope_clt(hand_set(False), tmp_path / "clt")
    f = folder / "params_layer_1.safetensors"
    t = load_file(str(f))
    t["b_enc"] = torch.full_like(t["b_enc"], float("nan"))
    save_file(t, str(f))
    with pytest.raises(InterpError, match="non-finite"):
        load_clt(folder)
    t["b_enc"] = torch.zeros(F + 1)
    save_file(t, str(f))
    with pytest.raises(InterpError, match=r"b_enc has shape \(13,\)"):
        load_clt(folder)
    (folder / "params_layer_0.safetensors").unlink()
    with pytest.raises(InterpError, match="layer file 0 is missing"):
        load_clt(folder)
    with pytest.raises(InterpError, match="not a CLT folder"):
        load_clt(tmp_path / "nowhere")
