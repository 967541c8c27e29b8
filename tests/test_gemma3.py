"""Gemma 3 270M, the second real model, one integration test per capability family, each against an
independent reference: transformers' own module, TransformerLens's own patcher, the logit difference
DLA must sum to, induction on repeated random tokens, ROME's undo, the residual stream a transcoder
must predict, and the model's own probability at a graph's logit node. The architecture-specific
maths (sandwich norms, sliding windows, QK-norm, one KV head) is checked edge by edge on tiny-gemma3."""

import pytest
import torch

from interp.tokens import single_token, to_tokens
from tests.conftest import EIFFEL

pytestmark = pytest.mark.slow

def test_the_bridge_is_transformers_gemma3_and_knows_paris(gemma):
    tokens = to_tokens(gemma, EIFFEL)
    assert tokens[0, 0].item() == 2  # BOS, which Gemma expects
    with torch.no_grad():
        ours, theirs = gemma(tokens)[0, -1], gemma.original_model(tokens).logits[0, -1]
    assert torch.equal(ours, theirs)
    p = ours.softmax(-1)
    assert p.argmax().item() == single_token(gemma, " Paris") and 0.7 < p.max().item() < 0.82


def test_exact_patching_equals_transformerlens(gemma):
    from transformer_lens import patching as tl_patching

    from interp.circuits.patching import patch_sweep
    from interp.metrics import make_task

    task = make_task(gemma, "The Eiffel Tower is in", "The Colosseum is in", " Paris", " Rome")  # 6 tokens
    a, w = task.answer[0].item(), task.wrong[0].item()
    with torch.no_grad():
        _, clean_cache = gemma.run_with_cache(task.clean)
        theirs = tl_patching.get_act_patch_resid_pre(gemma, task.corrupt, clean_cache,
                                                     lambda lg: lg[0, -1, a] - lg[0, -1, w])
    ours = patch_sweep(gemma, task, "resid_pre")
    assert torch.allclose(ours.values, theirs.cpu(), atol=2e-3)
    norm = ours.normalized()
    assert norm[0, 2:4].max() > 0.5 and norm[-1, -1] > 0.95  # the subject early, the last token late


def test_dla_sums_to_the_logit_difference_and_induction_heads_are_found(gemma):
    from interp.circuits.attention import detect_heads
    from interp.circuits.lens import direct_logit_attribution

    dla = direct_logit_attribution(gemma, EIFFEL, " Paris", " Rome")
    with torch.no_grad():
        logits = gemma(to_tokens(gemma, EIFFEL))[0, -1]
    assert dla.logit_diff == pytest.approx((logits[single_token(gemma, " Paris")]
                                            - logits[single_token(gemma, " Rome")]).item(), abs=1e-4)
    assert dla.total == pytest.approx(dla.logit_diff, abs=1e-3)  # through the sandwich norms, exactly
    heads = detect_heads(gemma)
    assert heads.loss_first_repeat > 12 and heads.loss_second_repeat < 1.5
    top = [h["name"] for h in heads.top("induction", 3)]
    assert top[0] == "L5H1" and "L11H2" in top  # in the full-attention layers 5 and 11
    assert heads.scores["induction"].shape == (18, 4)


def test_rome_on_known_facts_reports_es_ps_ns_and_undo_is_exact(gemma):
    """CounterFact's scores on two shipped facts Gemma knows, at the MLP trace's peak layer. The edits
    succeed and generalise to paraphrases; their specificity (NS) is low on this model (README)."""
    from interp.knowledge import rome
    from interp.knowledge.counterfact import evaluate, load_requests

    layer = 6  # the MLP causal trace's peak at the last subject token (README)
    W = rome.out_proj(gemma, layer).weight.detach().clone()
    requests = load_requests(None)[:2]
    result = evaluate(gemma, requests, layer, rome.RomeConfig(cov_tokens=20_000), fluency=False)
    assert result.pre["ES"] == 0 and result.pre["NS"] == 100  # known facts: true beats new, before
    assert result.post["ES"] == 100 and result.post["PS"] >= 50
    assert 0 <= result.post["NS"] <= 100 and all(r["layer"] == layer for r in result.requests)
    assert torch.equal(rome.out_proj(gemma, layer).weight, W)  # every edit undone, bit for bit


def test_a_transcoders_hooks_are_gemma_scope_2s(gemma):
    """The transcoder reads pre_feedforward_layernorm's output and predicts what the layer adds to the
    residual stream (after post_feedforward_layernorm), both checked against the HF modules."""
    from interp.architectures import architecture

    arch = architecture(gemma)
    layer = 7
    names = [arch.transcoder_input.format(l=layer), f"blocks.{layer}.hook_mlp_out",
             f"blocks.{layer}.hook_resid_mid", f"blocks.{layer}.hook_resid_post"]
    with torch.no_grad():
        _, cache = gemma.run_with_cache(to_tokens(gemma, EIFFEL), names_filter=lambda n: n in names)
        hf = gemma.original_model.model.layers[layer]
        x_in = hf.pre_feedforward_layernorm(cache[names[2]])
        y = hf.post_feedforward_layernorm(hf.mlp(x_in))
    assert torch.allclose(cache[names[0]], x_in, atol=1e-5)
    assert torch.allclose(cache[names[1]], y, atol=1e-5)
    added = cache[names[3]] - cache[names[2]]
    assert torch.allclose(cache[names[1]], added, atol=1e-4 * added.abs().max().item())


def test_a_graphs_logit_node_carries_the_models_probability(gemma):
    from interp.circuits.graph import attribution_graph
    from saes import SAEConfig, make_sae
    from saes.transcoder import TranscoderSet

    g = torch.Generator().manual_seed(0)
    d, w = gemma.cfg.d_model, 32
    layers = {}
    for layer in range(gemma.cfg.n_layers):
        tc = make_sae(SAEConfig("topk", d, w, k=2, hook_name=f"blocks.{layer}.ln2.hook_out",
                                hook_out=f"blocks.{layer}.hook_mlp_out", skip=True, model_name="gemma3-270m"))
        with torch.no_grad():
            tc.W_enc.copy_(torch.randn(d, w, generator=g) / d ** 0.5)
            tc.W_dec.copy_(torch.randn(w, d, generator=g) * 0.1)
            tc.W_skip.copy_(torch.randn(d, d, generator=g) * 0.01)
        layers[layer] = tc.eval().requires_grad_(False)
    graph = attribution_graph(gemma, TranscoderSet(layers, "gemma3-270m"), "The Eiffel Tower is in", max_logits=3)
    with torch.no_grad():
        p = gemma(to_tokens(gemma, "The Eiffel Tower is in"))[0, -1].softmax(-1)
    top = graph.summary()["logits"][0]
    assert top["probability"] == pytest.approx(p.max().item(), rel=1e-4)
    assert top["token"] == gemma.tokenizer.decode([int(p.argmax())])
    assert graph.check_exact() < 1e-3 * float(abs(graph.adjacency).max())
