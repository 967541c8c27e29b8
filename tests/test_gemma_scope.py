"""Gemma Scope 2's files read exactly (issue 40, item 1): synthetic folders in the release's layout with
hand-set weights, for an SAE of each site and a plain and an affine transcoder, each computing what the
JumpReLU formula gives by hand; broken files refused in one line; a set of its transcoders making an
exact graph on tiny-gemma3."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from interp.errors import InterpError
from saes.gemma_scope import load_gemma_scope
from saes.io import load_sae, resolve_hook
from saes.transcoder import load_set

D, WIDTH = 64, 96  # tiny-gemma3: d_model 64, and 4 heads × head_dim 16 before o_proj
SITES = {"resid_post": ("model.layers.{l}.output",) * 2,
         "mlp_out": ("model.layers.{l}.post_feedforward_layernorm.output",) * 2,
         "attn_out": ("model.layers.{l}.self_attn.o_proj.input",) * 2,
         "transcoder": ("model.layers.{l}.pre_feedforward_layernorm.output",
                        "model.layers.{l}.post_feedforward_layernorm.output")}


def write_folder(root, site, layer, affine=False, seed=0, width=WIDTH, l0="small", **override):
    """A dictionary folder as the release lays it out, with random weights and thresholds that let about
    half the latents fire; ``override`` replaces tensors (a broken upload)."""
    g = torch.Generator().manual_seed(seed + 100 * layer)
    folder = root / f"{site}_all" / f"layer_{layer}_width_{width}_l0_{l0}{'_affine' if affine else ''}"
    folder.mkdir(parents=True)
    t = {"w_enc": torch.randn(D, width, generator=g) / D ** 0.5, "w_dec": torch.randn(width, D, generator=g) * 0.2,
         "b_enc": torch.randn(width, generator=g) * 0.1, "b_dec": torch.randn(D, generator=g) * 0.1,
         "threshold": torch.rand(width, generator=g) * 0.5}
    if affine:
        t["affine_skip_connection"] = torch.randn(D, D, generator=g) * 0.05
    t.update(override)
    save_file({k: v.contiguous() for k, v in t.items()}, str(folder / "params.safetensors"))
    hf_in, hf_out = (h.format(l=layer) for h in SITES[site])
    (folder / "config.json").write_text(json.dumps({
        "architecture": "jump_relu", "hf_hook_point_in": hf_in, "hf_hook_point_out": hf_out,
        "affine_connection": affine, "width": width, "l0": l0, "model_name": "tiny-gemma3"}))
    return folder, {k: v.double() for k, v in t.items()}


def by_hand(t, x):
    """The release's formula in float64: z = x w_enc + b_enc, f = z·1[z > θ], x̂ = f w_dec + b_dec + x·skip."""
    z = x @ t["w_enc"] + t["b_enc"]
    f = z * (z > t["threshold"])
    out = f @ t["w_dec"] + t["b_dec"]
    if "affine_skip_connection" in t:
        out = out + x @ t["affine_skip_connection"]
    return f, out


@pytest.mark.parametrize("site,affine", [("resid_post", False), ("mlp_out", False), ("attn_out", False),
                                         ("transcoder", False), ("transcoder", True)])
def test_each_site_computes_the_jumprelu_formula_by_hand(tmp_path, tiny_models, site, affine):
    folder, t = write_folder(tmp_path, site, 1, affine)
    sae = load_sae(folder)
    x = torch.randn(200, D, generator=torch.Generator().manual_seed(7), dtype=torch.float64) * 1.5
    f_want, out_want = by_hand(t, x)
    out = sae(x.float())
    assert (out.feature_acts > 0).sum() > 1000  # latents fire, and about half stay off
    assert torch.equal(out.feature_acts > 0, f_want > 0)
    torch.testing.assert_close(out.feature_acts.double(), f_want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.x_hat.double(), out_want, rtol=1e-5, atol=1e-5)
    assert sae.is_transcoder == (site == "transcoder")
    assert bool(sae.is_transcoder and sae.cfg.skip) == affine
    want_hook = {"resid_post": "blocks.1.hook_resid_post", "mlp_out": "blocks.1.hook_mlp_out",
                 "attn_out": "blocks.1.attn.o.hook_in", "transcoder": "blocks.1.ln2.hook_out"}[site]
    assert sae.cfg.hook_name == want_hook
    if site == "transcoder":
        assert sae.cfg.hook_out == "blocks.1.hook_mlp_out"
    if site == "attn_out":  # the heads concatenated: it computes, but no SAE job attaches a per-head hook yet
        with pytest.raises(InterpError, match="4 heads concatenated"):
            resolve_hook(tiny_models["tiny-gemma3"], sae)
    else:
        assert resolve_hook(tiny_models["tiny-gemma3"], sae) == want_hook  # the hook exists, of this width


BROKEN = {
    "a wrong shape": (dict(w_dec=torch.zeros(WIDTH + 1, D)), "w_dec has shape"),
    "NaN": (dict(b_enc=torch.full((WIDTH,), float("nan"))), "non-finite"),
    "a negative threshold": (dict(threshold=-torch.ones(WIDTH)), "negative"),
    "integer weights": (dict(b_dec=torch.zeros(D, dtype=torch.int32)), "not a floating-point tensor"),
}


@pytest.mark.parametrize("what", sorted(BROKEN))
def test_a_broken_file_is_refused_in_one_line(tmp_path, what):
    override, said = BROKEN[what]
    folder, _ = write_folder(tmp_path, "transcoder", 0, **override)
    with pytest.raises(InterpError, match=said) as err:
        load_sae(folder)
    assert "\n" not in str(err.value)


def test_missing_keys_bad_json_and_unknown_hooks_are_refused_in_one_line(tmp_path):
    folder, _ = write_folder(tmp_path, "transcoder", 0, affine=True)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, "hf_hook_point_in": "model.layers.0.mlp.up_proj.output"}))
    with pytest.raises(InterpError, match="not one of Gemma Scope 2's"):
        load_sae(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(InterpError, match="is not JSON"):
        load_sae(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    from safetensors.torch import load_file

    t = load_file(str(folder / "params.safetensors"))
    del t["affine_skip_connection"]
    save_file(t, str(folder / "params.safetensors"))
    with pytest.raises(InterpError, match="lacks affine_skip_connection"):
        load_gemma_scope(folder)
    (folder / "params.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(InterpError, match="corrupt or truncated"):
        load_gemma_scope(folder)


def test_a_set_of_its_transcoders_makes_an_exact_graph_and_a_variant_is_chosen_by_pattern(tmp_path, tiny_models):
    from interp.circuits.graph import attribution_graph

    model = tiny_models["tiny-gemma3"]
    for layer in range(model.cfg.n_layers):
        write_folder(tmp_path, "transcoder", layer, affine=True, seed=3)
    tset = load_set(tmp_path / "transcoder_all")
    assert sorted(tset.layers) == list(range(model.cfg.n_layers)) and tset.source == "gemma-scope-2"
    g = attribution_graph(model, tset, "The Eiffel Tower is in the city of", batch=8, max_feature_nodes=64,
                          label_features=False)
    assert g.active_features > g.n_features == 64 and g.check_exact() < 1e-4  # the left-out input counted too
    # the release holds several variants per layer: a plain folder is ambiguous, a quoted pattern chooses
    for layer in range(model.cfg.n_layers):
        write_folder(tmp_path, "transcoder", layer, seed=4, l0="big")
    with pytest.raises(InterpError, match=r"2 dictionaries for layer 0 \(width_96_l0_big, width_96_l0_small_affine\)"):
        load_set(tmp_path / "transcoder_all")
    chosen = load_set(str(tmp_path / "transcoder_all" / "layer_*_width_96_l0_big"))
    assert not any(tc.cfg.skip for tc in chosen.layers.values())
    np.testing.assert_allclose(chosen.layers[2].W_dec.detach().numpy(), write_folder(tmp_path / "again", "transcoder", 2,
                                                                             seed=4, l0="big")[1]["w_dec"].numpy(),
                               rtol=1e-6)
