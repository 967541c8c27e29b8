import pytest
import torch

from interp.circuits.eap import build_graph, discover_circuit, edge_attribution, faithfulness_curve, patched_edges_metric
from interp.errors import InterpError
from interp.metrics import make_task, metric_per_pair
from tests.conftest import EIFFEL

COLOSSEUM = "The Colosseum is located in the city of"


def _naive_edge_patched_metric(model, task, keep):
    """The definition, computed by fixed-point iteration with whole forward passes: every
    receiver reads the corrupt run's input plus, for each edge it keeps, (out_u − out_u^corrupt)
    with out_u taken from the *previous* pass. After n_layers + 1 passes nothing changes."""
    g = build_graph(model)
    n, h = model.cfg.n_layers, model.cfg.n_heads
    kv = model.cfg.n_key_value_heads or h

    def outputs(cache):
        outs = [cache["blocks.0.hook_resid_pre"]]
        for l in range(n):
            z = cache[f"blocks.{l}.attn.hook_z"]
            heads = [z[:, :, i] @ model.W_O[l, i] for i in range(h)]
            if hasattr(model.blocks[l], "ln1_post"):  # Gemma: each head through the post-norm, at this run's scale
                total = sum(heads)
                normed = model.blocks[l].ln1_post._original_component(total)
                heads = [hd * (normed / total) for hd in heads]  # the norm is g ⊙ x / s: the same factor for all
            outs += heads
            outs.append(cache[f"blocks.{l}.hook_mlp_out"])
        return outs

    with torch.no_grad():
        _, corrupt = model.run_with_cache(task.corrupt)
        corrupt_out = outputs(corrupt)
        # What each receiver reads in the corrupt run: the residual stream before it.
        base_in = {}
        for r, (name, kind) in enumerate(zip(g.receivers, g.recv_input)):
            layer = int(g.recv_layer[r])
            base_in[r] = (corrupt[f"blocks.{layer}.hook_resid_pre"] if kind in "qkv"
                          else corrupt[f"blocks.{layer}.hook_resid_mid"] if kind == "mlp"
                          else corrupt["ln_final.hook_in"])
        prev = corrupt_out
        model.set_use_split_qkv_input(True)
        try:
            metrics = []
            for _ in range(2 * n + 3):
                def reader(r):
                    x = base_in[r].clone()
                    for u in range(len(g.upstream)):
                        if g.valid[r, u] and keep[r, u]:
                            x = x + prev[u] - corrupt_out[u]
                    return x

                hooks, r = [], 0
                for l in range(n):
                    for kind, count in (("q", h), ("k", kv), ("v", kv)):
                        rows = list(range(r, r + count))
                        hooks.append((f"blocks.{l}.attn.hook_{kind}_input",
                                      lambda x, *, hook, rows=rows: torch.stack([reader(i) for i in rows], 2)))
                        r += count
                    hooks.append((f"blocks.{l}.ln2.hook_in", lambda x, *, hook, r=r: reader(r)))
                    r += 1
                hooks.append(("ln_final.hook_in", lambda x, *, hook, r=r: reader(r)))
                with model.hooks(fwd_hooks=hooks):
                    logits, cache = model.run_with_cache(task.clean)
                prev = outputs(cache)
                metrics.append(metric_per_pair(logits[:, -1], task.answer, task.wrong, "logit_diff").mean().item())
        finally:
            model.set_use_split_qkv_input(False)
    assert metrics[-1] == pytest.approx(metrics[-2], abs=1e-6), "fixed point not reached"
    return metrics[-1]


def test_faithfulness_equals_the_naive_definition(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    g = build_graph(tiny)
    keep = torch.rand(g.valid.shape, generator=torch.Generator().manual_seed(3)) < 0.4
    fast = patched_edges_metric(tiny, task, keep)
    assert fast == pytest.approx(_naive_edge_patched_metric(tiny, task, keep), abs=1e-4)


def test_all_edges_is_clean_and_no_edges_is_corrupt(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    g = build_graph(tiny)
    eap = edge_attribution(tiny, task)
    assert patched_edges_metric(tiny, task, g.valid) == pytest.approx(eap.clean_baseline, abs=1e-4)
    assert patched_edges_metric(tiny, task, torch.zeros_like(g.valid)) == pytest.approx(eap.corrupt_baseline, abs=1e-4)


def test_eap_scores_are_the_textbook_formula(tiny):
    """score(u → v) = (out_u^clean − out_u^corrupt) · ∂m/∂in_v, with the gradient taken
    independently through TransformerLens's backward hooks on the receivers' forks."""
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    eap = edge_attribution(tiny, task)
    g = eap.graph
    grads = {}
    tiny.set_use_split_qkv_input(True)
    try:
        for name in ("blocks.2.attn.hook_q_input", "blocks.1.ln2.hook_in", "ln_final.hook_in"):
            tiny.add_hook(name, lambda grad, hook, name=name: grads.__setitem__(name, grad.detach()), dir="bwd")
        with torch.enable_grad():
            logits = tiny(task.corrupt)
            metric_per_pair(logits[:, -1], task.answer, task.wrong, "logit_diff").mean().backward()
    finally:
        tiny.reset_hooks()
        tiny.set_use_split_qkv_input(False)
        tiny.zero_grad(set_to_none=True)
    with torch.no_grad():
        _, clean = tiny.run_with_cache(task.clean)
        _, corrupt = tiny.run_with_cache(task.corrupt)

    def delta(node):
        if node == "input":
            return clean["blocks.0.hook_resid_pre"] - corrupt["blocks.0.hook_resid_pre"]
        if node.startswith("MLP"):
            name = f"blocks.{node[3:]}.hook_mlp_out"
            return clean[name] - corrupt[name]
        l, h = map(int, node[1:].split("H"))
        name = f"blocks.{l}.attn.hook_z"

        def write(cache):  # the head's write into the residual; on Gemma through the post-norm at this run's scale
            out = cache[name][:, :, h] @ tiny.W_O[l, h]
            if hasattr(tiny.blocks[l], "ln1_post"):
                norm = tiny.blocks[l].ln1_post._original_component
                out = out / cache[f"blocks.{l}.ln1_post.hook_scale"] * (1 + norm.weight)
            return out

        return write(clean) - write(corrupt)

    cases = [("L0H1", "L2H3", grads["blocks.2.attn.hook_q_input"][:, :, 3]),
             ("MLP0", "MLP1", grads["blocks.1.ln2.hook_in"]),
             ("L1H2", "MLP1", grads["blocks.1.ln2.hook_in"]),
             ("input", "logits", grads["ln_final.hook_in"]),
             ("MLP2", "logits", grads["ln_final.hook_in"])]
    for up, recv, grad in cases:
        r = g.receivers.index(recv) if recv != "L2H3" else g.receivers.index("L2H3")
        expected = (delta(up) * grad).sum().item()
        assert eap.scores[r, g.upstream.index(up)].item() == pytest.approx(expected, abs=1e-5), (up, recv)


def test_graph_shape(tiny):
    g = build_graph(tiny)
    n, h = tiny.cfg.n_layers, tiny.cfg.n_heads
    kv = tiny.cfg.n_key_value_heads or h
    assert len(g.upstream) == 1 + n * (h + 1)
    assert len(g.receivers) == n * (h + 2 * kv + 1) + 1
    # heads read only from strictly earlier layers; MLPs also from their own layer's heads
    assert not g.valid[g.receivers.index("L1H0"), g.upstream.index("L1H0")]
    assert g.valid[g.receivers.index("MLP1"), g.upstream.index("L1H0")]
    assert not g.valid[g.receivers.index("MLP1"), g.upstream.index("MLP1")]
    # Every node names its component (the explorer's graph clicks through with it).
    from interp.circuits.eap import node_component

    for node in set(g.upstream + g.receivers) - {"input", "logits"}:
        c = node_component(node, h, kv)
        assert c is not None and 0 <= c["layer"] < n and (c["node"] == "mlp" or 0 <= c["head"] < h)
    assert node_component("L3KV1", 9, 3) == {"node": "head", "layer": 3, "head": 3}
    assert node_component("logits", h, kv) is None and node_component("input", h, kv) is None


def test_faithfulness_curve_is_the_definition_at_each_size(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    eap = edge_attribution(tiny, task)
    curve = faithfulness_curve(tiny, task, [4, 10**6], scores=eap)
    total = int(eap.graph.valid.sum())
    assert curve.sizes == [4, total] and curve.n_edges_total == total
    # The top 4 by |score|, chosen by hand among the edges that exist.
    flat = [(abs(float(eap.scores[r, u])), r, u) for r in range(eap.scores.shape[0])
            for u in range(eap.scores.shape[1]) if eap.graph.valid[r, u]]
    keep = torch.zeros_like(eap.graph.valid)
    for _, r, u in sorted(flat, reverse=True)[:4]:
        keep[r, u] = True
    m = _naive_edge_patched_metric(tiny, task, keep)
    expected = (m - eap.corrupt_baseline) / (eap.clean_baseline - eap.corrupt_baseline)
    assert curve.faithfulness[0] == pytest.approx(expected, abs=1e-3)
    assert curve.faithfulness[1] == pytest.approx(1.0, abs=1e-3)
    assert curve.figure().data
    with pytest.raises(InterpError, match="at least 1 edge"):
        faithfulness_curve(tiny, task, [0, 5], scores=eap)


def test_discover_circuit(tiny):
    task = make_task(tiny, EIFFEL, COLOSSEUM, " Paris", " Rome")
    small = discover_circuit(tiny, task, n_edges=5)
    big = discover_circuit(tiny, task, n_edges=10_000)
    assert len(small.edges) == 5 and big.faithfulness == pytest.approx(1.0, abs=1e-3)
    assert abs(small.edges[0]["score"]) >= abs(small.edges[-1]["score"])
    assert {e["src"] for e in small.edges} <= set(small.nodes)


def test_the_circuit_figure_keeps_labels_apart_and_draws_an_mlp_chain_as_a_path(tiny):
    from types import SimpleNamespace

    from interp.figures import circuit_figure

    nodes = ["input", "MLP0", "MLP1", "MLP2", *[f"L1H{h}" for h in range(4)], "logits"]
    edges = [{"src": "input", "dst": "MLP0", "score": 1.0}, {"src": "MLP0", "dst": "MLP1", "score": 0.5},
             {"src": "MLP1", "dst": "MLP2", "score": -0.4}, {"src": "MLP2", "dst": "logits", "score": 0.2}]
    fig = circuit_figure(SimpleNamespace(nodes=nodes, edges=edges, n_edges_total=99, faithfulness=0.5), 3)
    pts = next(t for t in fig.data if t.name == "nodes")
    where = dict(zip(pts.text, zip(pts.x, pts.y, pts.textposition)))
    assert len({where[f"MLP{i}"][0] for i in range(3)}) == 2  # consecutive MLPs step sideways
    row = sorted((where[f"L1H{h}"] for h in range(4)), key=lambda p: p[0])
    assert [p[2] for p in row] == ["top center", "bottom center"] * 2  # neighbours label on opposite sides
    assert min(b[0] - a[0] for a, b in zip(row, row[1:])) >= 1
