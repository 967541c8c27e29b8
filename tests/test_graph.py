"""Attribution graphs, against independent references: exactness, a naive per-source loop, dense numpy
pruning and scores, and frozen interventions."""

import numpy as np
import pytest
import torch

from interp.circuits.graph import attribution_graph
from interp.circuits.graph_intervention import intervene
from interp.circuits.graph_pruning import graph_scores, influence, normalize_rows, prune, threshold_for
from interp.errors import InterpError
from saes.config import SAEConfig
from saes.io import make_sae
from saes.transcoder import TranscoderSet

PROMPT = "The Eiffel Tower is in the city of"


def random_set(model, layers=None, skip=True, arch="topk", d_sae=48, k=4, seed=0, hook_in="hook_resid_mid"):
    """Random transcoders with biases that make features fire (an independent set for every test)."""
    g = torch.Generator().manual_seed(seed)
    d = model.cfg.d_model
    out = {}
    for layer in (range(model.cfg.n_layers) if layers is None else layers):
        sae = make_sae(SAEConfig(arch, d, d_sae, k=k, hook_name=f"blocks.{layer}.{hook_in}",
                                 hook_out=f"blocks.{layer}.hook_mlp_out", skip=skip,
                                 model_name=model.cfg.model_name))
        with torch.no_grad():
            sae.W_enc.copy_(torch.randn(d, d_sae, generator=g) / d ** 0.5)
            sae.W_dec.copy_(torch.randn(d_sae, d, generator=g) * 0.3)
            sae.b_enc.copy_(torch.rand(d_sae, generator=g) * 0.5)
            sae.b_dec.copy_(torch.randn(d, generator=g) * 0.1)
            sae.b_in.copy_(torch.randn(d, generator=g) * 0.1)
            sae.input_scale.fill_(0.7)
            sae.output_scale.fill_(1.3)
            if skip:
                sae.W_skip.copy_(torch.randn(d, d, generator=g) * 0.05)
        out[layer] = sae.eval().requires_grad_(False)
    return TranscoderSet(out, model.cfg.model_name)


def _naive_frozen(model, tset, tokens, drop):
    """The frozen replacement model written out independently: clean patterns and norm scales, each MLP
    output = Σ a·d + b_dec + skip(x) + error, with one source set to zero (``drop``). Returns the
    demeaned last-position logits and every transcoder's pre-activations."""
    L = model.cfg.n_layers
    names = [n for n in model.hook_dict if n.endswith(("hook_scale", "hook_pattern"))]
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names or "mlp_out" in n or
                                        n.endswith("resid_mid") or n == "hook_embed")
    parts = {}
    for layer in range(L):
        tc = tset.layers[layer]
        x = cache[f"blocks.{layer}.hook_resid_mid"][0]
        f = tc.encode(x).clone()
        f[0] = 0
        dec = tc.W_dec / tc.output_scale
        skip = torch.nn.functional.linear(x * tc.input_scale, tc.W_skip) / tc.output_scale
        err = cache[f"blocks.{layer}.hook_mlp_out"][0] - f @ dec - tc.b_dec / tc.output_scale - skip
        parts[layer] = (f, dec, err)
    seen, pres = {}, {}
    emb = cache["hook_embed"].clone()
    if drop[0] == "token":
        emb[0, drop[1]] = 0
    hooks = [(n, lambda x, hook: cache[hook.name]) for n in names]
    hooks.append(("hook_embed", lambda x, hook: emb))
    for layer in range(L):
        tc = tset.layers[layer]
        f, dec, err = parts[layer]
        f, err = f.clone(), err.clone()
        if drop[0] == "feature" and drop[1] == layer:
            f[drop[2], drop[3]] = 0
        if drop[0] == "error" and drop[1] == layer:
            err[drop[2]] = 0

        def grab(x, hook, layer=layer):
            seen[layer] = x
            pres[layer] = tset.layers[layer].pre_acts(x[0])
            return x

        def put(y, hook, layer=layer, f=f, err=err, dec=dec, tc=tc):
            x = seen[layer][0]
            skip = torch.nn.functional.linear(x * tc.input_scale, tc.W_skip) / tc.output_scale
            return (f @ dec + tc.b_dec / tc.output_scale + skip + err)[None]

        hooks += [(f"blocks.{layer}.hook_resid_mid", grab), (f"blocks.{layer}.hook_mlp_out", put)]
    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1]
    return logits - logits.mean(), pres


def worst_edge_error(g, naive) -> float:
    """The largest difference between a graph's feature and logit rows and a naive loop: ``naive(tokens,
    drop)`` runs the frozen model with one source zeroed (``("none",)``: none) and returns the demeaned last
    logits and each layer's pre-activations; each column is what zeroing its source takes away."""
    tokens = torch.tensor([g.tokens])
    base_logits, base_pre = naive(tokens, ("none",))
    P = g.n_pos
    sources = [("feature", *map(int, g.features[i])) for i in range(g.n_features)]
    sources += [("error", layer, pos) for layer in range(g.n_layers) for pos in range(P)]
    sources += [("token", pos) for pos in range(P)]
    worst = 0.0
    for col, src in enumerate(sources):
        logits, pre = naive(tokens, src)
        want_logit = (base_logits - logits)[g.logit_tokens].numpy()
        worst = max(worst, float(np.abs(g.adjacency[g.logit_slice, col] - want_logit).max()))
        want_feat = np.array([float(base_pre[int(l_)][int(p_), int(j_)] - pre[int(l_)][int(p_), int(j_)])
                              for l_, p_, j_ in g.features])
        worst = max(worst, float(np.abs(g.adjacency[:g.n_features, col] - want_feat).max()))
    return worst


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_every_edge_equals_a_naive_loop_and_rows_sum_to_the_pre_activation(tiny_models, name):
    model = tiny_models[name]
    tset = random_set(model)
    g = attribution_graph(model, tset, PROMPT, batch=8, first_position_errors="keep")
    assert g.active_features == g.n_features > 20
    # check 1: every feature and logit row, with its bias, sums to the actual pre-activation
    assert g.check_exact() < 1e-4
    # check 2: every column against the naive loop, one source zeroed per frozen forward pass
    worst = worst_edge_error(g, lambda tokens, drop: _naive_frozen(model, tset, tokens, drop))
    assert worst < 1e-4, worst
    # error and token rows have no inputs
    assert not g.adjacency[g.n_features:g.logit_slice.start].any()
    # circuit-tracer's convention: position 0's error nodes lose their edges, and each row's bias gains
    # exactly what they gave it; every other edge is the same
    z = attribution_graph(model, tset, PROMPT, batch=8, first_position_errors="zero")
    assert z.first_position_errors == "zero" and z.check_exact() < 1e-4
    key = {tuple(f): i for i, f in enumerate(z.features.tolist())}
    perm = np.r_[[key[tuple(f)] for f in g.features.tolist()], np.arange(z.n_features, z.n_nodes)].astype(int)
    A_z, bias_z = z.adjacency[np.ix_(perm, perm)], z.bias[perm]
    first = [g.error_slice.start + layer * g.n_pos for layer in range(g.n_layers)]
    assert not A_z[:, first].any()
    rest = np.setdiff1d(np.arange(g.n_nodes), first)
    np.testing.assert_allclose(A_z[:, rest], g.adjacency[:, rest], atol=1e-5)
    rows = np.r_[0:g.n_features, g.logit_slice.start:g.logit_slice.stop]
    np.testing.assert_allclose(bias_z[rows], g.bias[rows] + g.adjacency[np.ix_(rows, first)].sum(1), atol=1e-4)
    auto = attribution_graph(model, tset, PROMPT, batch=8, label_features=False)
    assert auto.first_position_errors == ("zero" if model.cfg.default_prepend_bos else "keep")


def test_a_layer_without_a_transcoder_is_all_error_and_warns(tiny_models, capsys):
    model = tiny_models["tiny-llama"]
    tset = random_set(model, layers=[0, 2])
    g = attribution_graph(model, tset, PROMPT, batch=8)
    assert "layers 1 have no transcoder" in capsys.readouterr().err
    assert g.check_exact() < 1e-4 and set(g.features[:, 0].tolist()) <= {0, 2}
    assert g.layers_without_transcoder == [1]


def test_post_norm_inputs_and_no_skip_stay_exact(tiny_models):
    model = tiny_models["tiny-llama"]
    tset = random_set(model, skip=False, hook_in="mlp.hook_in", arch="relu", seed=3)
    g = attribution_graph(model, tset, PROMPT, batch=16, max_logits=4)
    assert g.check_exact() < 1e-4


def _numpy_reference(A, w, n_features, n_tokens, n_logits, node_t, edge_t):
    """Dense numpy: explicit inverse, sort, cumulative sum."""
    n = len(A)

    def norm(M):
        a = np.abs(M)
        return a / np.maximum(a.sum(1, keepdims=True), 1e-10)

    def infl(M):
        return w @ (np.linalg.inv(np.eye(n) - M) - np.eye(n))

    def thr(s, share):
        s = np.sort(s.ravel())[::-1]
        cum = np.cumsum(s) / s.sum()
        return s[min(np.searchsorted(cum, share), len(s) - 1)]

    node_inf = infl(norm(A))
    keep = node_inf >= thr(node_inf, node_t)
    keep[n - n_tokens - n_logits:] = True
    P = A.copy()
    P[~keep] = 0
    P[:, ~keep] = 0
    Pn = norm(P)
    scores = Pn * (infl(Pn) + w)[:, None]
    edges = (scores >= thr(scores, edge_t)) & (P != 0)
    return node_inf, keep, edges


def _random_dag(n_features, n_errors, n_tokens, n_logits, seed):
    rng = np.random.default_rng(seed)
    n = n_features + n_errors + n_tokens + n_logits
    A = np.zeros((n, n))
    order = rng.permutation(n_features)  # a topological order of the features
    rank = np.empty(n_features, int)
    rank[order] = np.arange(n_features)
    for t in range(n_features):
        for s in range(n_features):
            if rank[s] < rank[t] and rng.random() < 0.3:
                A[t, s] = rng.normal()
        A[t, n_features:n_features + n_errors + n_tokens] = rng.normal(size=n_errors + n_tokens) * (
            rng.random(n_errors + n_tokens) < 0.5)
    A[n - n_logits:, :n - n_logits] = rng.normal(size=(n_logits, n - n_logits)) * (
        rng.random((n_logits, n - n_logits)) < 0.4)
    w = np.zeros(n)
    p = rng.random(n_logits)
    w[n - n_logits:] = p / p.sum() * 0.9
    return A, w


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pruning_influence_and_scores_equal_a_dense_numpy_reference(seed):
    nf, ne, nt, nl = 30, 12, 4, 3
    A, w = _random_dag(nf, ne, nt, nl, seed)
    At, wt = torch.tensor(A), torch.tensor(w)
    node_inf, keep, edges = _numpy_reference(A, w, nf, nt, nl, 0.8, 0.98)
    np.testing.assert_allclose(influence(normalize_rows(At), wt).numpy(), node_inf, rtol=1e-8, atol=1e-10)
    p = prune(At, wt, nf, nt, nl, 0.8, 0.98)
    # before the clean-up passes, the masks are the reference's; the clean-up only removes
    e = edges.copy()
    k = keep.copy()
    while True:
        before = k.copy()
        e[~k] = False
        e[:, ~k] = False
        k[:nf + ne] &= e[:, :nf + ne].any(0)
        k[:nf] &= e[:nf].any(1)
        if (before == k).all():
            break
    assert (p.node_mask.numpy() == k).all() and (p.edge_mask.numpy() == e).all()
    # scores
    norm = np.abs(A) / np.maximum(np.abs(A).sum(1, keepdims=True), 1e-10)
    inf = w @ (np.linalg.inv(np.eye(len(A)) - norm) - np.eye(len(A)))
    tok, err = inf[nf + ne:nf + ne + nt].sum(), inf[nf:nf + ne].sum()
    comp = ((1 - norm[:, nf:nf + ne].sum(1)) * (inf + w)).sum() / (inf + w).sum()
    s = graph_scores(At, wt, slice(nf, nf + ne), slice(nf + ne, nf + ne + nt))
    assert s.replacement == pytest.approx(tok / (tok + err)) and s.completeness == pytest.approx(comp)
    assert threshold_for(torch.tensor([4.0, 3.0, 2.0, 1.0]), 0.7) == 3.0  # 4+3 = 70% of 10


def test_a_tiny_models_graph_prunes_and_scores_like_the_reference(tiny_models):
    model = tiny_models["tiny-llama"]
    g = attribution_graph(model, random_set(model, seed=5), PROMPT, batch=16)
    A = g.adjacency.astype(np.float64)
    w = g.logit_weights().numpy()
    node_inf, keep, _ = _numpy_reference(A, w, g.n_features, g.n_pos, g.n_logits, 0.8, 0.98)
    p = g.prune(0.8, 0.98)
    np.testing.assert_allclose(p.node_influence.numpy() - w, node_inf, rtol=1e-6, atol=1e-9)
    assert (p.node_mask.numpy() <= keep).all()  # the clean-up only removes nodes
    s_full, s_pruned = g.scores(), g.scores(0.8, 0.98)
    assert 0 < s_full.replacement <= 1 and 0 < s_full.completeness <= 1
    assert 0 < s_pruned.completeness <= 1
    doc = g.to_json()
    assert {n["feature_type"] for n in doc["nodes"]} >= {"embedding", "logit"}


@pytest.mark.parametrize("target", [None, 6])
def test_a_capped_graph_takes_features_by_influence_like_a_dense_reference(tiny_models, monkeypatch, target):
    """With --max-feature-nodes below the active count, rows come in rounds, each taking the features of
    highest influence through the rows so far. Reference: the full graph's rows, and at each round the
    influence as a dense inverse over the features already taken. The logits weigh in by probability;
    with --target (the 7th likeliest token here) the target alone does."""
    import interp.circuits.graph as graph_module

    model = tiny_models["tiny-llama"]
    tset = random_set(model, seed=3)
    monkeypatch.setattr(graph_module, "INFLUENCE_ROUND", 4)
    tok = None if target is None else attribution_graph(model, tset, PROMPT, batch=8, label_features=False,
                                                         max_feature_nodes=1).logit_text[target]
    full = attribution_graph(model, tset, PROMPT, batch=8, label_features=False, target=tok)
    cap = attribution_graph(model, tset, PROMPT, batch=8, max_feature_nodes=40, label_features=False, target=tok)
    F, n_round, n_cap = full.n_features, 4, 40
    assert cap.n_features == n_cap < F == cap.active_features
    A = full.adjacency.astype(np.float64)
    norm = np.abs(A) / np.maximum(np.abs(A).sum(1, keepdims=True), 1e-10)
    weights = full.logit_probs if tok is None else np.eye(full.n_logits)[0]  # the target is the first logit
    assert (cap.top_logit_input()["weighting"] == "target") == (tok is not None)
    direct = weights @ norm[full.logit_slice, :F]
    done: list[int] = []
    while len(done) < n_cap:
        M = np.zeros((F, F))
        M[done] = norm[done, :F]
        inf = direct @ np.linalg.inv(np.eye(F) - M)
        inf[done] = -1
        done += [int(i) for i in np.argsort(-inf)[:min(n_round, n_cap - len(done))]]
    key = {tuple(f): i for i, f in enumerate(full.features.tolist())}
    assert {key[tuple(f)] for f in cap.features.tolist()} == set(done)
    # each capped row equals the full graph's row, and sums exactly with the input left out
    idx = [key[tuple(f)] for f in cap.features.tolist()]
    rest = list(range(F, F + full.n_errors + full.n_pos))
    np.testing.assert_allclose(cap.adjacency[:n_cap, :n_cap + len(rest)], full.adjacency[np.ix_(idx, idx + rest)],
                               atol=1e-6)
    assert cap.check_exact() < 1e-4 and np.abs(cap.dropped[:n_cap]).max() > 0


def test_frozen_interventions_equal_the_edge_predictions(tiny_models):
    model = tiny_models["tiny-llama"]
    tset = random_set(model, seed=7)
    g = attribution_graph(model, tset, PROMPT, batch=16)
    for i in (0, 1, 5):
        layer, pos, feat = (int(v) for v in g.features[i])
        iv = intervene(model, tset, g, [(layer, feat, pos, 0.0)])
        np.testing.assert_allclose(iv.frozen_after, iv.predicted_after, atol=1e-4)
        assert iv.frozen_after != iv.before and len(iv.real_top) == 5
    layer, pos, feat = (int(v) for v in g.features[2])
    iv = intervene(model, tset, g, [(layer, feat, pos, 2.5), (int(g.features[3][0]), int(g.features[3][2]), None, 0.0)])
    np.testing.assert_allclose(iv.frozen_after, iv.predicted_after, atol=1e-4)


def test_bad_graph_input_gets_one_clear_line(tiny_models):
    model = tiny_models["tiny-llama"]
    tset = random_set(model)
    with pytest.raises(InterpError, match="empty"):
        attribution_graph(model, tset, "   ")
    with pytest.raises(InterpError, match="GB"):
        attribution_graph(model, tset, PROMPT, memory_limit=10_000)
    g = attribution_graph(model, tset, PROMPT, batch=16)
    with pytest.raises(InterpError, match="threshold"):
        g.prune(0.0, 0.9)
    with pytest.raises(InterpError, match="threshold"):
        g.prune(0.8, 1.5)
    layer, pos, feat = (int(v) for v in g.features[0])
    inactive = next(p for p in range(1, g.n_pos) if not g.find(layer, feat, p))
    with pytest.raises(InterpError, match="not active at position"):
        intervene(model, tset, g, [(layer, feat, inactive, 0.0)])
    import argparse

    from interp.cli._common import ablation, steering

    assert ablation("12:345@6") == (12, 345, 6, 0.0)  # the CLI's --ablate / --steer types
    assert steering("3:4=2.5") == (3, 4, None, 2.5)
    with pytest.raises(argparse.ArgumentTypeError, match="not a feature"):
        ablation("12-345")
    with pytest.raises(InterpError, match="trained on"):
        TranscoderSet(tset.layers, "gpt2").check_model(model)


def test_top_paths_are_signed_and_promoting_and_suppressing_chains_rank_apart(tiny_models):
    model = tiny_models["tiny-llama"]
    g = attribution_graph(model, random_set(model, seed=5), PROMPT, batch=16)
    p = g.prune(0.9, 0.99)
    A = np.where(p.edge_mask.numpy(), g.adjacency, 0.0)
    t = g.logit_slice.start
    ups, downs = g.top_paths(k=3, node_threshold=0.9, edge_threshold=0.99, sign=1), \
        g.top_paths(k=3, node_threshold=0.9, edge_threshold=0.99, sign=-1)
    # the reference: the logit row's strongest positive and negative entries, by a plain sort
    pos = sorted((float(A[t, s]) for s in range(g.n_nodes) if A[t, s] > 0), reverse=True)[:3]
    neg = sorted(float(A[t, s]) for s in range(g.n_nodes) if A[t, s] < 0)[:3]
    assert [q["strength"] for q in ups] == pytest.approx(pos) and [q["strength"] for q in downs] == pytest.approx(neg)
    assert pos and neg  # both kinds exist, so the test can tell them apart
    assert {q["effect"] for q in ups} == {"promotes"} and {q["effect"] for q in downs} == {"suppresses"}
    for q in ups + downs:  # every edge's signed weight; the last one into the logit is the strength
        assert q["weights"][-1] == q["strength"] and len(q["weights"]) == len(q["nodes"]) - 1
    summary = g.summary(0.9, 0.99)["top_paths"]
    assert [q["effect"] for q in summary] == ["promotes"] * len(ups) + ["suppresses"] * len(downs)


def test_the_graph_verb_writes_a_file_that_validates_and_refuses_bad_input(tiny_models, tmp_path, monkeypatch):
    import json

    from interp.circuits.graph_json import validate_graph_json
    from saes.transcoder import save_circuit_tracer
    from tests.test_cli import assert_one_line_error, run_json

    model = tiny_models["tiny-llama"]
    save_circuit_tracer(random_set(model, seed=11), tmp_path / "tc")
    base = ("graph", "--model", "tiny-llama", "--transcoders", str(tmp_path / "tc"))
    out = run_json(*base, "--prompt", PROMPT, "--out", str(tmp_path / "g.json"), "--html", str(tmp_path / "g.html"))
    assert out["exactness_max_error"] < 1e-4 and out["nodes_pruned"] <= out["nodes"]
    assert {"replacement", "completeness"} <= set(out["scores_pruned"]) and out["top_paths"]
    doc = json.loads((tmp_path / "g.json").read_text())
    validate_graph_json(doc)  # the documented schema (docs/graph_json.md)
    assert set(doc) == {"metadata", "qParams", "nodes", "links"} and doc["metadata"]["schema_version"] == 1
    kinds = {n["feature_type"] for n in doc["nodes"]}
    assert kinds >= {"embedding", "logit", "cross layer transcoder"}
    feat = next(n for n in doc["nodes"] if n["feature_type"] == "cross layer transcoder")
    layer, f, pos = map(int, feat["node_id"].split("_"))
    assert feat["feature"] == (layer + f) * (layer + f + 1) // 2 + f and feat["jsNodeId"] == f"{layer}_{f}-0"
    read = run_json("graph", "--read", str(tmp_path / "g.json"))
    assert read["nodes"] == len(doc["nodes"]) and read["links"] == len(doc["links"])
    iv = run_json(*base, "--prompt", PROMPT, "--ablate", f"{layer}:{f}@{pos}")["intervention"]
    np.testing.assert_allclose(iv["frozen_after"], iv["predicted_after"], atol=1e-4)
    # bad input: one line each, nothing written
    doc["metadata"]["schema_version"] = 2
    (tmp_path / "old.json").write_text(json.dumps(doc))
    assert_one_line_error("graph", "--read", str(tmp_path / "old.json"), message="schema version 2")
    assert_one_line_error(*base, "--prompt", "", message="empty")
    assert_one_line_error(*base, "--prompt", PROMPT, "--node-threshold", "1.5", message="(0, 1]")
    assert_one_line_error(*base, "--prompt", PROMPT, "--edge-threshold", "0", message="(0, 1]")
    assert_one_line_error(*base, "--prompt", PROMPT, "--target", " Paris and", message="--target")
    assert_one_line_error(*base, "--prompt", PROMPT, "--ablate", "0:1@99", message="past the end of the prompt")
    monkeypatch.setenv("INTERP_GRAPH_MEMORY_GB", "1")  # the limit follows the machine; one small enough to refuse
    assert_one_line_error(*base, "--prompt", PROMPT * 40, "--batch", "1024", message="fits")
    assert_one_line_error("graph", "--model", "tiny-gpt2", "--transcoders", str(tmp_path / "tc"), "--prompt", PROMPT,
                          message="trained on")
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_the_embedded_models_graph_is_exact_and_its_frozen_interventions_match(smol):
    """The integration check on the real model: random transcoders on a third of the layers (the rest are
    error nodes), every row summing to its pre-activation and a frozen ablation matching the edges."""
    tset = random_set(smol, layers=range(0, smol.cfg.n_layers, 3), d_sae=256, k=4, seed=2)
    g = attribution_graph(smol, tset, PROMPT, batch=32)
    scale = max(1.0, float(np.abs(g.pre_activations).max()))
    assert g.check_exact() < 1e-4 * scale, (g.check_exact(), scale)
    assert g.logit_text[0] == " Paris"
    layer, pos, feat = (int(v) for v in g.features[0])
    iv = intervene(smol, tset, g, [(layer, feat, pos, 0.0)])
    np.testing.assert_allclose(iv.frozen_after, iv.predicted_after, atol=1e-4 * scale)


def test_a_target_graph_keeps_the_features_that_drive_a_low_probability_target(tiny_models):
    """A tiny model built so that two features at the last position write the unembedding direction of
    a low-probability token T and two others the top token's. With a cap of two feature nodes,
    weighting by probability (circuit-tracer's) keeps the top token's pair, and T's input from the
    features left out exceeds that from the ones kept; weighting by the target keeps T's pair, and the
    kept input is the larger (issue 41)."""
    from interp.circuits.local_replacement import clean_parts, clean_run
    from interp.tokens import to_tokens

    model = tiny_models["tiny-llama"]
    tset = random_set(model, seed=5)
    L = model.cfg.n_layers
    tokens = to_tokens(model, PROMPT)
    with torch.no_grad():
        logits = model(tokens)[0, -1].float()
        _, _, acts = clean_parts(model, tset, clean_run(model, tset, tokens)["cache"])
    order = logits.argsort(descending=True).tolist()
    top, target = order[0], order[5]  # T: the sixth likeliest
    on = torch.nonzero(acts[L - 1][-1] > 0)[:, 0].tolist()
    assert len(on) >= 4
    drives_t, drives_top = on[:2], on[2:4]
    W_U = model.W_U.detach().float()
    tc = tset.layers[L - 1]
    with torch.no_grad():
        for group, tok in ((drives_t, target), (drives_top, top)):
            direction = W_U[:, tok] - W_U.mean(1)
            for j in group:
                tc.W_dec[j] = 20 * direction / direction.norm() / float(acts[L - 1][-1, j]) * tc.output_scale
    t_text = model.to_str_tokens(torch.tensor([target]))[0]

    def kept(weight_target):
        g = attribution_graph(model, tset, PROMPT, max_feature_nodes=2, target=t_text, weight_target=weight_target,
                              label_features=False)
        pos = g.n_pos - 1
        return {int(f) for layer, p, f in g.features.tolist() if layer == L - 1 and p == pos}, g.top_logit_input()

    by_prob, fed_prob = kept(False)
    by_target, fed_target = kept(True)
    assert by_prob == set(drives_top) and fed_prob["weighting"] == "probability"
    assert abs(fed_prob["from_left_out_features"]) > abs(fed_prob["from_kept_features"])
    assert by_target == set(drives_t) and fed_target["weighting"] == "target"
    assert fed_target["from_kept_features"] > abs(fed_target["from_left_out_features"])
