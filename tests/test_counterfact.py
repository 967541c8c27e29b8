"""CounterFact-style evaluation: request files, scoring against naive references, restoring."""

import json
import math

import pytest
import torch

from interp.knowledge import counterfact, rome
from interp.errors import InterpError
from interp.tokens import to_tokens
from tests.conftest import EIFFEL


def test_shipped_requests_have_the_promised_shape():
    reqs = counterfact.load_requests()
    assert len(reqs) >= 20
    for r in reqs:
        assert len(r.paraphrase_prompts) >= 2 and len(r.neighborhood_prompts) == 3 and r.generation_prompts
        assert r.prompt.count("{}") == 1 and r.target_new != r.target_true
    assert any(len(r.target_true.split()) > 1 for r in reqs)  # multi-token objects are in the set


def test_native_counterfact_records_load(tmp_path):
    record = {"case_id": 7, "requested_rewrite": {"prompt": "{} is located in the city of", "subject": "The Louvre",
                                                  "target_new": {"str": "Rome"}, "target_true": {"str": "Paris"}},
              "paraphrase_prompts": ["a", "b"], "neighborhood_prompts": ["c"], "generation_prompts": ["d"]}
    path = tmp_path / "cf.json"
    path.write_text(json.dumps([record]))
    (r,) = counterfact.load_requests(str(path))
    assert (r.id, r.target_new, r.target_true, r.neighborhood_prompts) == ("7", " Rome", " Paris", ("c",))


@pytest.mark.parametrize("content, message", [
    ("not json", "is not JSON"),
    ("[]", "holds no requests"),
    ('[{"prompt": "{} is", "subject": "x"}]', "lacks field"),
    ('[{"prompt": "is", "subject": "x", "target_new": " a", "target_true": " b", "paraphrase_prompts": [],'
     ' "neighborhood_prompts": []}]', "needs '{}' exactly once"),
])
def test_bad_request_files(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InterpError, match=message.replace("{", r"\{").replace("}", r"\}")):
        counterfact.load_requests(str(path))
    with pytest.raises(InterpError, match="cannot read"):
        counterfact.load_requests(str(tmp_path / "missing.json"))


def test_target_probs_equal_a_naive_loop(tiny):
    prompts = [EIFFEL, "The Louvre is in"]
    targets = [" Rome", " New York City"]
    batched = counterfact.target_probs(tiny, prompts, targets)
    for i, p in enumerate(prompts):
        for j, t in enumerate(targets):
            ids = to_tokens(tiny, p)[0].tolist()
            logp = 0.0
            for tok in tiny.tokenizer.encode(t, add_special_tokens=False):  # one forward per target token
                logp += tiny(torch.tensor([ids]))[0, -1].float().log_softmax(-1)[tok].item()
                ids.append(tok)
            n = len(tiny.tokenizer.encode(t, add_special_tokens=False))
            assert batched[i, j].item() == pytest.approx(math.exp(logp / n), rel=1e-4)


def test_ngram_entropy_textbook_values():
    h2 = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))  # bigrams ab, ba, ab
    h3 = 1.0  # trigrams aba, bab
    assert counterfact.ngram_entropy("a b a b") == pytest.approx((2 / 3 * h2 + 4 / 3 * h3) / 2)
    assert counterfact.ngram_entropy("x x x x x x") == 0.0


def test_evaluate_edits_and_restores_the_model(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    reqs = counterfact.load_requests()[:2]
    before = {n: p.detach().clone() for n, p in tiny.named_parameters()}
    config = rome.RomeConfig(cov_tokens=1024, corpus="bbc-news", n_prefixes=2, v_steps=3)
    res = counterfact.evaluate(tiny, reqs, layer=1, config=config)
    assert all(torch.equal(p, before[n]) for n, p in tiny.named_parameters()) and not rome.edits(tiny)
    assert len(res.requests) == 2 and len(res.edit_seconds) == 2
    for when in ("pre", "post"):
        for m in ("ES", "PS", "NS"):
            assert 0 <= res.to_dict()[when][m] <= 100
        rows = [r[when] for r in res.requests]
        assert res.to_dict()[when]["ES"] == pytest.approx(100 * sum(r["ES"] for r in rows) / 2, abs=1e-3)
    assert res.requests[0]["post"]["generations"]


def test_edit_report_scores_its_prompts_against_target_probs(tiny_models, tmp_path, monkeypatch):
    """The report's CounterFact scores, before and after, equal a direct count over target_probs; the
    scores without prompts are left out; the edit stays applied until undone."""
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    model = tiny_models["tiny-llama"]
    config = rome.RomeConfig(cov_tokens=1024, corpus="bbc-news", n_prefixes=2, v_steps=3)
    para = ["Where is the Eiffel Tower? It is in the city of", "The Eiffel Tower stands in"]
    rep = counterfact.edit_report(model, "{} is located in the city of", "The Eiffel Tower", " Rome", 1, config,
                                  max_new_tokens=3, paraphrases=para)
    try:
        assert set(rep.metrics["after"]) == {"ES", "EM", "PS", "PM"}  # no neighbourhood prompts given
        p = counterfact.target_probs(model, para, [" Rome", rep.previous_answer])
        assert rep.metrics["after"]["PS"] == pytest.approx(float((p[:, 0] > p[:, 1]).float().mean()))
        assert rep.metrics["after"]["PM"] == pytest.approx(float((p[:, 0] - p[:, 1]).mean()), abs=1e-5)
        after = rep.probs["after"]
        assert rep.metrics["after"]["EM"] == pytest.approx(after["target"] - after["previous_answer"], abs=1e-5)
        assert rep.to_dict()["metrics"] == rep.metrics
    finally:
        rep.edit.undo()
    assert not rome.edits(model)


def test_harmonic_mean():
    assert counterfact._harmonic(100, 50, 100) == pytest.approx(75.0)
    assert counterfact._harmonic(100, 0, 100) == 0.0


@pytest.mark.slow
def test_shipped_requests_are_true_for_the_embedded_model(smol):
    """Before editing, the model prefers the true object on every rewrite prompt of the set."""
    for r in counterfact.load_requests():
        p = counterfact.target_probs(smol, [r.prompt.replace("{}", r.subject)], [r.target_new, r.target_true])[0]
        assert p[1] > p[0], r.subject
