"""Parts of a graph not to trust (issue 41, item 6): massive-activation positions and interventions whose
frozen and real effects disagree, in the summary, the JSON and the figure."""

import statistics

import numpy as np
import pytest
import torch

from interp.circuits.graph import attribution_graph
from interp.circuits.graph_intervention import Intervention
from interp.circuits.graph_trust import (OUTLIER_NORM, disagreement, flag_intervention, norm_ratios, trust_summary,
                                         untrusted_nodes)
from tests.test_graph import PROMPT, random_set


def test_the_graphs_norm_ratios_equal_a_naive_loop(tiny_models):
    model = tiny_models["tiny-llama"]
    g = attribution_graph(model, random_set(model), PROMPT, label_features=False)
    _, cache = model.run_with_cache(torch.tensor([g.tokens]))
    for layer in range(model.cfg.n_layers):
        norms = [float(cache[f"blocks.{layer}.hook_resid_post"][0, p].norm()) for p in range(g.n_pos)]
        med = statistics.median(norms[1:])
        assert g.norm_ratio[layer, 0] == 0
        for p in range(1, g.n_pos):
            assert g.norm_ratio[layer, p] == pytest.approx(norms[p] / med, rel=1e-5)


def test_the_embedded_models_massive_activation_on_3_plus_4_is_found(smol):
    """The issue's case: on "3 + 4 =" SmolLM2's ' ' before the 4 carries a residual stream ten times the
    others' from layer 3 on; no other position is marked."""
    from interp.tokens import to_tokens

    tokens = to_tokens(smol, "3 + 4 =")
    _, cache = smol.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_resid_post"))
    norms = np.stack([cache[f"blocks.{layer}.hook_resid_post"][0].norm(dim=-1).numpy()
                      for layer in range(smol.cfg.n_layers)])
    marked = norm_ratios(norms) >= OUTLIER_NORM
    assert smol.to_str_tokens(tokens)[2] == " "
    assert set(np.nonzero(marked)[1].tolist()) == {2}
    assert marked[3:8, 2].all()


def test_nodes_at_a_massive_activation_are_marked_in_the_summary_json_and_figure(tiny_models):
    model = tiny_models["tiny-llama"]
    g = attribution_graph(model, random_set(model), PROMPT, label_features=False)
    ratio = np.ones((g.n_layers, g.n_pos))
    ratio[:, 0] = 0
    ratio[0:2, 2] = 9.0  # position 2 after layers 0 and 1, set by hand
    g.norm_ratio = ratio
    marked = untrusted_nodes(g)
    want = {i for i, (layer, pos, _) in enumerate(g.features.tolist()) if pos == 2 and layer < 2}
    want |= {g.error_slice.start + layer * g.n_pos + 2 for layer in (0, 1)}
    assert set(marked) == want and all("9x the prompt's median norm" in why for why in marked.values())
    summary = g.summary()["untrusted"]
    assert summary["massive_activation_positions"] == [
        {"position": 2, "token": g.token_text[2], "layers": [0, 1], "max_norm_ratio": 9.0}]
    assert summary["nodes"] == len(want)
    doc = g.to_json()
    flagged = {n["node_id"] for n in doc["nodes"] if "untrusted" in n}
    expected = {n["node_id"] for n in doc["nodes"] if n["feature_type"] in ("cross layer transcoder",
                                                                            "mlp reconstruction error")
                and n["ctx_idx"] == 2 and int(n["layer"]) < 2}
    assert flagged == expected and summary["nodes_pruned"] >= len(expected)
    fig = g.figure()
    outlines = [c for tr in fig.data if tr.mode == "markers+text" for c in tr.marker.line.color]
    assert outlines.count("#f58518") == len(expected)


@pytest.mark.parametrize("before, frozen, real, says", [
    (0.0, -0.90, -0.09, "overstates"),  # the "3 + 4 =": a tenth of the predicted effect
    (1.0, 0.6, 1.3, "opposite signs"),  # the steering of L4#335: predicted down, went up
    (0.0, 0.02, 0.15, "understates"),
    (0.0, -0.5, -0.4, None),
    (0.0, 0.01, -0.012, None),  # both negligible
])
def test_frozen_and_real_changes_disagree_by_sign_or_a_factor(before, frozen, real, says):
    why = disagreement(before, frozen, real)
    assert (why is None) if says is None else (says in why)


def test_a_disagreeing_intervention_marks_the_nodes_it_set(tiny_models):
    model = tiny_models["tiny-llama"]
    g = attribution_graph(model, random_set(model), PROMPT, label_features=False)
    layer, pos, feat = (int(v) for v in g.features[0])

    def iv(frozen, real):
        return Intervention([{"layer": layer, "feature": feat, "position": pos, "value": 0.0, "activation": 1.0}],
                            g.logit_text, [0.0] * g.n_logits, [frozen] * g.n_logits, [frozen] * g.n_logits,
                            [real] * g.n_logits, [], [])

    assert flag_intervention(g, iv(-0.5, -0.45)) is None and not g.flags
    why = flag_intervention(g, iv(-0.9, -0.09))
    assert "overstates" in why and f"{layer}:{feat}@{pos}=0" in why
    assert g.flags == {0: why} and untrusted_nodes(g)[0] == why
    node = next(n for n in g.to_json(1.0, 1.0)["nodes"] if n["node_id"] == f"{layer}_{feat}_{pos}")
    assert node["untrusted"] == why
    assert trust_summary(g, np.ones(g.n_nodes, dtype=bool))["pruned"][0]["why"] == why
