"""Probes: activations, the fitted pipeline against direct scikit-learn, a planted signal, bad data."""

import json

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from interp.representations import probes
from interp.errors import InterpError
from interp.tokens import to_tokens


def test_shipped_datasets_are_large_and_balanced():
    for name in probes.SHIPPED:
        ds = probes.load_dataset(name)
        counts = np.bincount(ds.y)
        assert len(ds.y) >= 200 and counts.min() == counts.max(), (name, counts)
        assert len(set(ds.groups)) >= 7
    assert probes.load_dataset("language").labels == ["English", "French", "German", "Spanish"]


def test_activations_equal_a_naive_loop(tiny):
    ds = probes.load_dataset("pos")
    acts = probes.collect_activations(tiny, ds, [0, 2], batch_size=7)
    item = 0
    for t, spans in zip(ds.texts[:6], ds.spans[:6]):
        _, cache = tiny.run_with_cache(to_tokens(tiny, t))
        for lo, hi in spans:
            # the labelled word's last token, found by decoding tokens one by one
            ids = to_tokens(tiny, t)[0].tolist()
            ends = np.cumsum([len(_dec(tiny, ids[:i + 1])) - len(_dec(tiny, ids[:i]))
                              for i in range(len(ids))])
            pos = int(np.searchsorted(ends, hi))
            for li, layer in enumerate([0, 2]):
                torch.testing.assert_close(acts.X[li, item], cache[f"blocks.{layer}.hook_resid_post"][0, pos],
                                           rtol=1e-4, atol=1e-5)
            item += 1


def test_pipeline_equals_direct_sklearn_fit(tiny):
    ds = probes.load_dataset("sentiment")
    acts = probes.collect_activations(tiny, ds, [1])
    report = probes.probe_layers(acts, folds=3)
    train, test = probes.grouped_split(ds)
    assert not set(ds.groups[i] for i in train) & set(ds.groups[i] for i in test)  # no leakage
    X = acts.X[0].numpy().astype(np.float64)
    mu, sd = X[train].mean(0), X[train].std(0)
    sd[sd == 0] = 1.0
    direct = LogisticRegression(C=report.layers[0].C, max_iter=2000).fit((X[train] - mu) / sd, ds.y[train])
    acc = (direct.predict((X[test] - mu) / sd) == ds.y[test]).mean()
    assert report.layers[0].accuracy == pytest.approx(acc, abs=1 / len(test))
    lo, hi = report.layers[0].ci
    assert lo <= report.layers[0].accuracy <= hi


def test_planted_signal_is_found_at_the_planted_layer(tiny_models):
    model = tiny_models["tiny-llama"]
    ds = probes.load_dataset("sentiment")
    rng = np.random.default_rng(0)
    ds.y = rng.permutation(np.arange(len(ds.y)) % 2)  # labels unrelated to the text ...
    sign = torch.tensor(2.0 * ds.y - 1.0, dtype=torch.float32)
    u = torch.randn(model.cfg.d_model)
    u = 0.5 * u / u.norm()

    def plant(resid, *, hook):  # ... except for a direction added at layer 1
        return resid + sign[:, None, None] * u

    with model.hooks(fwd_hooks=[("blocks.1.hook_resid_post", plant)]):
        acts = probes.collect_activations(model, ds, batch_size=len(ds.texts))
    report = probes.probe_layers(acts, folds=3)
    acc = [p.accuracy for p in report.layers]
    assert acc[0] < 0.65 and acc[1] > 0.95 and acc[2] > 0.9, acc
    assert report.best.layer in (1, 2) and report.layers[1].selectivity > 0.3


def test_wilson_interval_textbook():
    lo, hi = probes.wilson(8, 10)
    assert (round(lo, 3), round(hi, 3)) == (0.490, 0.943)


def test_control_labels_are_a_function_of_word_type():
    ds = probes.load_dataset("pos")
    ctrl = probes.control_labels(ds)
    table = {}
    for t, c in zip(ds.types, ctrl):
        assert table.setdefault(t, c) == c


def test_feature_cosines_find_the_aligned_feature():
    W_dec = torch.randn(50, 16)
    hits = probes.feature_cosines(-3 * W_dec[17], W_dec, top_k=3)
    assert hits[0] == {"feature": 17, "cosine": -1.0}
    with pytest.raises(InterpError, match="does not match"):
        probes.feature_cosines(torch.randn(8), W_dec)


def _write(tmp_path, doc):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    return str(path)


@pytest.mark.parametrize("doc, message", [
    ({"examples": [{"text": "a", "label": "x"}, {"text": "b", "label": "x"}]}, "only one class"),
    ({"examples": [{"words": ["a", "b"], "labels": ["x"]}]}, "same length"),
    ({"labels": ["x", "y"], "examples": [{"text": "a", "label": "z"}]}, "not one of"),
    ({"position": "span", "examples": [{"text": "the [[cat]] sat", "label": "x"},
                                        {"text": "no marker", "label": "y"}]}, "no \\[\\[span\\]\\] marker"),
    ({"examples": []}, "needs an 'examples' list"),
])
def test_bad_datasets(tmp_path, doc, message):
    with pytest.raises(InterpError, match=message):
        probes.load_dataset(_write(tmp_path, doc))


def test_fewer_examples_than_folds(tmp_path, tiny):
    doc = {"examples": [{"text": f"text {i}", "label": "ab"[i % 2], "group": str(i)} for i in range(6)]}
    ds = probes.load_dataset(_write(tmp_path, doc))
    acts = probes.collect_activations(tiny, ds, [0])
    with pytest.raises(InterpError, match="fewer than the 5 folds"):
        probes.probe_layers(acts, folds=5)


def test_span_position_reads_the_marked_words(tmp_path, tiny):
    doc = {"position": "span", "examples": [{"text": "I saw [[the red cat]] today", "label": "x", "group": "1"},
                                             {"text": "[[Dogs]] bark", "label": "y", "group": "2"}]}
    ds = probes.load_dataset(_write(tmp_path, doc))
    assert ds.texts == ["I saw the red cat today", "Dogs bark"] and ds.types == ["the red cat", "dogs"]
    acts = probes.collect_activations(tiny, ds, [0])
    _, cache = tiny.run_with_cache(to_tokens(tiny, "Dogs bark"))
    n_dogs = len(tiny.tokenizer.encode("Dogs", add_special_tokens=False))
    shift = to_tokens(tiny, "Dogs bark").shape[1] - len(tiny.tokenizer.encode("Dogs bark", add_special_tokens=False))
    expected = cache["blocks.0.hook_resid_post"][0, shift:shift + n_dogs].mean(0)
    torch.testing.assert_close(acts.X[0, 1], expected, rtol=1e-4, atol=1e-5)


def _dec(model, ids):
    return model.tokenizer.decode(ids, skip_special_tokens=True)
