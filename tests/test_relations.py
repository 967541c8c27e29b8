"""Relations: the Jacobian against finite differences, LREs of an exactly affine toy map, the
pseudo-inverse edit on hand-set weights, resampling, and the shipped relations on the real model."""

from __future__ import annotations

import json

import pytest
import torch

from interp.errors import InterpError
from interp.knowledge import fact_recall as F
from interp.knowledge import relations as R
from interp.models import load_model
from tests.conftest import TINY

SUBJECTS = [" cat", " dog", " sun", " tree", " book", " red", " king", " water", " stone", " music", " bread",
            " house", " river", " light", " green", " horse"]


def _relation(model, template: str = "one two{}", subjects=SUBJECTS) -> R.Relation:
    """Single-token subjects whose objects are the model's own top-1 tokens (kept when the token
    survives a decode/encode round trip)."""
    tops = R.model_top1(model, [template.replace("{}", s) for s in subjects])
    samples = [{"subject": s, "object": model.tokenizer.decode([t])} for s, t in zip(subjects, tops)]
    samples = [x for x, t in zip(samples, tops) if R.first_token(model, x["object"]) == t]
    return R.parse_relation({"relation": "toy", "kind": "factual", "template": template, "samples": samples}, "toy")


def _state_at(model, prompt: str, pos: int, layer: int, s: torch.Tensor | None = None) -> torch.Tensor:
    """o (the last block's output at the last position) with resid_post[layer, pos] set to s: a
    plain TransformerLens forward, no cache."""
    n = model.cfg.n_layers
    got = {}

    def put(x, hook):
        if s is not None:
            x = x.clone()
            x[0, pos] = s
        return x

    def grab(x, hook):
        got["o"] = x[0, -1]
        return x

    with torch.no_grad():
        model.run_with_hooks(prompt, fwd_hooks=[(f"blocks.{layer}.hook_resid_post", put),
                                                (f"blocks.{n - 1}.hook_resid_post", grab)])
    return got["o"].double()


@pytest.mark.parametrize("layer", [0, 1])
def test_jacobian_equals_finite_differences(tiny, layer):
    prompt, subject = "The capital city of France is", "France"
    j, s, o = R.jacobian(tiny, prompt, subject, layer, chunk=24)
    pos = R.subject_span(tiny, prompt, subject)[1] - 1
    assert torch.allclose(o.double(), _state_at(tiny, prompt, pos, layer), atol=1e-4)
    d = tiny.cfg.d_model
    assert j.shape == (d, d)
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        v = torch.randn(d, generator=gen)
        eps = 1e-3 * s.norm() / v.norm()
        fd = (_state_at(tiny, prompt, pos, layer, s + eps * v) - _state_at(tiny, prompt, pos, layer, s - eps * v)) / (2 * eps)
        rel = ((j.double() @ v.double()) - fd).norm() / fd.norm()
        assert rel < 2e-3, rel
    # one full column by central differences too: the basis direction e_7
    e = torch.zeros(d)
    e[7] = 1e-2
    col = (_state_at(tiny, prompt, pos, layer, s + e) - _state_at(tiny, prompt, pos, layer, s - e)) / 2e-2
    assert torch.allclose(j[:, 7].double(), col, atol=2e-3 * col.abs().max().item())


def _affine_toy(name: str, layer: int):
    """A tiny model whose blocks after ``layer`` write nothing but their output biases: the last
    block's output is s + c at the last position, exactly affine in s (W = I)."""
    model = load_model(name, device="cpu")
    hf = model.original_model
    c = torch.zeros(model.cfg.d_model)
    with torch.no_grad():
        for l in range(layer + 1, model.cfg.n_layers):
            if name == "tiny-gpt2":
                block = hf.transformer.h[l]
                block.attn.c_proj.weight.zero_()
                block.mlp.c_proj.weight.zero_()
                c += block.attn.c_proj.bias + block.mlp.c_proj.bias
            else:
                block = hf.model.layers[l]
                block.self_attn.o_proj.weight.zero_()
                block.mlp.down_proj.weight.zero_()
    return model, c


@pytest.mark.parametrize("name", TINY)
def test_affine_toy_map_is_recovered_with_faithfulness_one(name):
    layer = 0
    model, c = _affine_toy(name, layer)
    rel = _relation(model, "one two{}")  # the subject is the last token: o = s + c there
    train, test = R.split_samples(rel)
    lre = R.fit_lre(model, rel, layer, n=4, examples=train[:4])
    d = model.cfg.d_model
    assert torch.allclose(lre.weight, torch.eye(d), atol=1e-4)
    assert torch.allclose(lre.bias, c, atol=1e-4)
    states = R.subject_states(model, rel, test, [layer])
    faith, pred = R.faithfulness(model, lre, states)
    assert faith == 1.0 and torch.equal(pred, states.top)
    # The pseudo-inverse edit with W = I moves s_i to s_j exactly: the model then says j's object.
    caus, targets = R.causality(model, lre, states, rank=None)
    assert caus == 1.0 and all(t >= 0 for t in targets)


def test_low_rank_pinv_on_hand_set_weights():
    gen = torch.Generator().manual_seed(1)
    q1, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    sv = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.1], dtype=torch.float64)
    w = q1 @ torch.diag(sv) @ q2.T
    assert torch.allclose(R.low_rank_pinv(w), torch.linalg.inv(w), atol=1e-9)
    r2 = R.low_rank_pinv(w, 2)  # textbook: V_r Σ_r⁻¹ U_rᵀ
    assert torch.allclose(r2, q2[:, :2] @ torch.diag(1 / sv[:2]) @ q1[:, :2].T, atol=1e-12)
    # the rank-2 edit reaches the target's component in the top-2 output directions only
    o, o2 = torch.randn(6, generator=gen, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    moved = w @ (r2 @ (o2 - o))
    proj = q1[:, :2] @ q1[:, :2].T
    assert torch.allclose(moved, proj @ (o2 - o), atol=1e-12)
    with pytest.raises(InterpError, match="rank 7 is out of range.*d_model"):
        R.low_rank_pinv(w, 7)


def test_causal_edit_on_hand_set_weights(tiny_models):
    """With a hand-set W = 2·I the edit is Δs = (o_j − o_i)/2, added at each prompt's last subject
    token: the batched, left-padded edit run equals a plain forward per prompt with Δs added."""
    model = tiny_models["tiny-llama"]
    rel = R.parse_relation({"template": "The capital city of {} is", "samples": [
        {"subject": s, "object": " Paris"} for s in ("France", "the Czech Republic", "Peru", "New Zealand")]}, "mix")
    states = R.subject_states(model, rel, rel.samples, [1])
    d = model.cfg.d_model
    lre = R.LRE("mix", 1, 1.0, 2 * torch.eye(d), torch.zeros(d), [], 0.0)
    inv = R.low_rank_pinv(lre.weight)
    assert torch.allclose(inv, 0.5 * torch.eye(d), atol=1e-6)
    delta = (states.o[[1, 2, 3, 0]] - states.o) @ inv.T
    assert torch.allclose(delta, (states.o[[1, 2, 3, 0]] - states.o) / 2, atol=1e-5)
    batched = R._run(model, states.rows, states.positions, edit=(1, delta))["logits"]
    for i, sample in enumerate(rel.samples):
        pos = states.positions[i]

        def add(x, hook, i=i, pos=pos):
            x = x.clone()
            x[0, pos] += delta[i]
            return x

        with torch.no_grad():
            ref = model.run_with_hooks(sample.prompt, fwd_hooks=[("blocks.1.hook_resid_post", add)])[0, -1]
        assert torch.allclose(batched[i], ref.float(), atol=1e-4), sample.subject
    with pytest.raises(InterpError, match="rank 65 is out of range"):
        R.causality(model, lre, states, rank=d + 1)


def test_relation_files_and_bad_input(tmp_path, tiny_models):
    model = tiny_models["tiny-gpt2"]
    shipped = R.list_relations()
    assert {r["kind"] for r in shipped} == set(R.KINDS)
    assert len(shipped) == 8 and all(r["n_subjects"] >= 30 for r in shipped)
    with pytest.raises(InterpError, match="no shipped relation 'nope'"):
        R.load_relation("nope")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"template": "The capital of {} is", "samples": [{"subject": "France"}]}))
    with pytest.raises(InterpError, match="sample 0 needs a non-empty 'subject' and 'object'"):
        R.load_relation(str(path))
    path.write_text(json.dumps({"template": "The capital is", "samples": []}))
    with pytest.raises(InterpError, match="no '\\{\\}' where the subject goes"):
        R.load_relation(str(path))
    path.write_text(json.dumps({"samples": [{"subject": "Rome", "object": " Italy", "prompt": "Paris is in"}]}))
    with pytest.raises(InterpError, match="subject 'Rome' does not occur in its prompt"):
        R.load_relation(str(path))
    path.write_text(json.dumps({"template": "The capital of {} is",
                                "samples": [{"subject": s, "object": " X"} for s in ("France", "Spain", "Peru")]}))
    rel = R.load_relation(str(path))
    with pytest.raises(InterpError, match="an LRE from n=8 examples needs at least 8"):
        R.fit_lre(model, rel, 0, n=8)
    # resampling: prompts of different token lengths (no partner) are refused
    path.write_text(json.dumps({"template": "The capital of {} is", "samples": [
        {"subject": "France", "object": " Paris"}, {"subject": "the Czech Republic", "object": " Prague"}]}))
    with pytest.raises(InterpError, match="same token length"):
        F.resample_pairs(model, R.load_relation(str(path)))


def test_multi_token_objects_are_named(tiny_models, capsys):
    model = tiny_models["tiny-gpt2"]
    rel = R.parse_relation({"template": "The capital of {} is", "samples": [
        {"subject": "France", "object": " Paris"}, {"subject": "Argentina", "object": " Buenos Aires"}]}, "multi")
    toks = R._object_tokens(model, rel, rel.samples)
    assert toks.tolist() == [R.first_token(model, " Paris"), R.first_token(model, " Buenos")]
    assert "several tokens long (' Buenos Aires'); they are scored by their first token" in capsys.readouterr().err


def test_resample_pairs_share_length_and_differ_in_object(tiny_models):
    model = tiny_models["tiny-llama"]
    rel = R.load_relation("country_capital")
    pairs = F.resample_pairs(model, rel, seed=3)
    objects = R._object_tokens(model, rel, rel.samples)
    assert len(pairs) >= len(rel.samples) - 5
    for i, j in pairs:
        a, b = rel.samples[i], rel.samples[j]
        assert i != j and objects[i] != objects[j]
        assert R.to_tokens(model, a.prompt).shape == R.to_tokens(model, b.prompt).shape
        assert R.subject_span(model, a.prompt, a.subject) == R.subject_span(model, b.prompt, b.subject)


def test_patched_edges_logits_all_and_none(tiny_models):
    """Keeping every edge gives the clean run; keeping none gives the corrupt run."""
    from interp.circuits.eap import build_graph, patched_edges_logits
    from interp.metrics import make_task

    model = tiny_models["tiny-llama"]
    task = make_task(model, ["The capital city of France is", "The capital city of Spain is"],
                     ["The capital city of Italy is", "The capital city of Peru is"], [" Paris", " Madrid"],
                     [" Rome", " Lima"])
    g = build_graph(model)
    with torch.no_grad():
        clean, corrupt = model(task.clean)[:, -1], model(task.corrupt)[:, -1]
    assert torch.allclose(patched_edges_logits(model, task, g.valid.clone()), clean, atol=1e-4)
    assert torch.allclose(patched_edges_logits(model, task, torch.zeros_like(g.valid)), corrupt, atol=1e-4)


def test_shipped_relations_are_known_by_the_embedded_model(smol):
    """Every shipped subject's object starts with the model's top-1 token, by a plain forward of
    the prompts (batched only among prompts of equal token length: no padding, no cache)."""
    from collections import defaultdict

    for row in R.list_relations():
        rel = R.load_relation(row["name"])
        groups = defaultdict(list)
        for sample in rel.samples:
            groups[R.to_tokens(smol, sample.prompt).shape[1]].append(sample)
        for group in groups.values():
            with torch.no_grad():
                tops = smol(torch.cat([R.to_tokens(smol, x.prompt) for x in group]))[:, -1].argmax(-1).tolist()
            for sample, top in zip(group, tops):
                want = smol.tokenizer.encode(sample.object, add_special_tokens=False)[0]
                assert top == want, (rel.name, sample.subject, smol.tokenizer.decode([top]), sample.object)


def test_lre_on_the_embedded_model(smol):
    """One relation, one layer: an LRE is faithful well above chance and its edits move answers."""
    rel = R.load_relation("country_capital")
    sweep = R.lre_sweep(smol, rel, layers=[12], n=4, rank=64)
    assert sweep.faithfulness[0] >= 0.5, sweep
    assert sweep.causality[0] >= 0.2, sweep


def _cli(capsys, *args) -> tuple[int, dict | None, str]:
    from interp.cli import main

    code = main([*args, "--json"])
    cap = capsys.readouterr()
    return code, (json.loads(cap.out) if code == 0 else None), cap.err


def test_relation_verbs_json_and_errors(capsys, tmp_path):
    code, out, _ = _cli(capsys, "relation", "--list")
    assert code == 0 and len(out["relations"]) == 8
    html = tmp_path / "lre.html"
    code, out, _ = _cli(capsys, "relation", "--model", "tiny-llama", "--dataset", "verb_past", "--layer", "1",
                        "--n", "2", "--ranks", "8,16", "--html", str(html))
    assert code == 0 and out["layers"] == [1] and out["best_layer"] == 1 and html.is_file()
    assert {"faithfulness", "causality", "beta", "seconds_per_lre", "n_test", "rank_sweep"} <= set(out)
    assert set(out["rank_sweep"]) == {"8", "16"} and out["axes"]["faithfulness"] == ["layer"]
    code, out, _ = _cli(capsys, "patch", "--model", "tiny-llama", "--resample", "country_capital",
                        "--max-pairs", "6", "--site", "mlp_out")
    assert code == 0 and out["sites"] == ["mlp_out"] and out["n_pairs"] == 6
    assert len(out["effects"]["mlp_out"]) == len(out["roles"]) and len(out["effects"]["mlp_out"][0]) == 3
    code, out, _ = _cli(capsys, "circuit", "--model", "tiny-llama", "--relation", "animal_sound", "--sizes", "10,40")
    assert code == 0 and out["sizes"] == [10, 40] and len(out["accuracy"]) == 2 and out["n_test"] > 0
    for args, message in [
        (("relation", "--model", "tiny-llama", "--dataset", "verb_past", "--rank", "65"),
         "rank 65 is out of range"),
        (("relation", "--model", "tiny-llama"), "relation needs --dataset"),
        (("patch", "--model", "tiny-llama", "--resample", "verb_past", "--site", "head_out"),
         "--resample sweeps (layer, position) sites"),
        (("patch", "--model", "tiny-llama"), "patch needs --clean, --corrupt, --answer, --wrong"),
    ]:
        code, _, err = _cli(capsys, *args)
        lines = [l for l in err.splitlines() if l.startswith("interp:")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err
