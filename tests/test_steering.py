"""Steering: the hook adds α·v exactly, directions match their definitions, curves are reproducible."""

import numpy as np
import pytest
import torch

from interp.representations import probes, steering
from interp.generation import generate
from interp.tokens import to_tokens
from tests.conftest import EIFFEL


def test_steer_adds_alpha_v_at_every_position_and_cleans_up(tiny):
    v = torch.randn(tiny.cfg.d_model)
    tokens = to_tokens(tiny, EIFFEL)
    plain = tiny(tokens)
    with steering.steer(tiny, v, 3.0, 1):
        steered = tiny(tokens)
    manual = tiny.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, *, hook: x + 3.0 * v)])
    torch.testing.assert_close(steered, manual)
    assert not torch.allclose(steered, plain)
    torch.testing.assert_close(tiny(tokens), plain)  # the hook is gone


def test_mean_difference_and_probe_direction(tiny):
    ds = probes.load_dataset("sentiment")
    acts = probes.collect_activations(tiny, ds, [2])
    X = acts.X[0].numpy()
    pos = ds.y == ds.labels.index("positive")
    expected = X[pos].mean(0) - X[~pos].mean(0)
    np.testing.assert_allclose(steering.mean_difference(acts, 2, "positive").numpy(), expected, rtol=1e-4, atol=1e-6)
    d = steering.probe_direction(acts, 2, "positive", folds=3)
    assert d.norm().item() == pytest.approx(float(np.linalg.norm(expected)), rel=1e-4)
    # the probe direction separates the classes: positive examples project higher on average
    proj = X @ d.numpy()
    assert proj[pos].mean() > proj[~pos].mean()


def test_curve_is_reproducible_and_alpha_zero_is_unsteered(tiny):
    v = torch.randn(tiny.cfg.d_model)
    scorer = lambda texts: np.array([len(t) % 7 / 7 for t in texts])
    a = steering.steering_curve(tiny, v, 1, [0.0, 5.0], ["The movie was", "I think"], scorer, max_new_tokens=5)
    b = steering.steering_curve(tiny, v, 1, [0.0, 5.0], ["The movie was", "I think"], scorer, max_new_tokens=5)
    assert a.generations == b.generations and len(a.mean_score) == 2 and len(a.scores[0]) == 2
    with steering.steer(tiny, v, 0.0, 1):
        alone = generate(tiny, "The movie was", 5, mode="sample", top_k=20, seed=0)
    assert a.generations[0][0] == alone  # prompt 0 reads seed 0 whatever shares its batch


@pytest.mark.slow
def test_sentiment_steering_moves_the_embedded_model(smol):
    ds = probes.load_dataset("sentiment")
    acts = probes.collect_activations(smol, ds, [10])
    v = steering.mean_difference(acts, 10, "positive")
    scorer = steering.probe_scorer(smol, ds, 10, "positive")
    assert scorer(["What a wonderful, lovely day."])[0] > 0.5 > scorer(["What a terrible, awful day."])[0]
    # The README's run (interp steer --layer 10): five prompts, 30 sampled tokens, seed 0.
    prompts = ["I went to see the movie and", "The food at the new place", "My week has been", "The hotel room was",
               "Reading this book made me"]
    curve = steering.steering_curve(smol, v, 10, [-4.0, 4.0], prompts, scorer, max_new_tokens=30)
    assert curve.mean_score[1] > curve.mean_score[0] + 0.3, curve.mean_score
