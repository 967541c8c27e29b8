"""Feature steering against the formula on hand-set weights, and the autointerp scoring arithmetic."""

import pytest
import torch

from interp.errors import InterpError
from saes import SAEConfig, make_sae
from saes.features.autointerp import _score, format_example
from saes.features.steer import steer_feature, steering_hook

HOOK = "blocks.1.hook_resid_post"


def hand_set_sae(d=64, d_sae=8):
    """ReLU SAE with W_enc[:, j] = 2·e_j, W_dec[j] = 0.5·e_j + 0.1·e_{j+8}, b_enc = −0.1, b_dec = 0.05·1."""
    sae = make_sae(SAEConfig("relu", d, d_sae, hook_name=HOOK))
    with torch.no_grad():
        sae.W_enc.zero_(), sae.W_dec.zero_()
        for j in range(d_sae):
            sae.W_enc[j, j] = 2.0
            sae.W_dec[j, j] = 0.5
            sae.W_dec[j, j + 8] = 0.1
        sae.b_enc.fill_(-0.1)
        sae.b_dec.fill_(0.05)
    return sae.eval()


def _resid(model, tokens, hooks):
    seen = {}

    def keep(x, *, hook):
        seen["x"] = x.clone()
        return x

    model.run_with_hooks(tokens, fwd_hooks=hooks + [(HOOK, keep)])
    return seen["x"][0]


@pytest.mark.parametrize("mode", ["clamp", "add"])
@pytest.mark.parametrize("positions", [None, [1, 3]])
def test_steered_residual_is_the_formula(tiny_models, mode, positions):
    model = tiny_models["tiny-llama"]
    sae = hand_set_sae()
    tokens = model.to_tokens("The cat sat on the mat", prepend_bos=False)
    j, v = 2, 3.0
    x = _resid(model, tokens, [])
    got = _resid(model, tokens, [(HOOK, steering_hook(sae, j, v, mode, positions))])
    want = x.clone()
    w = torch.zeros(64)
    w[j], w[j + 8] = 0.5, 0.1
    for p in (range(len(x)) if positions is None else positions):
        f_j = max(0.0, 2.0 * (x[p, j].item() - 0.05) - 0.1)  # ReLU((x − b_dec)·W_enc[:, j] + b_enc[j])
        want[p] = x[p] + ((v - f_j) if mode == "clamp" else v) * w
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_clamping_a_feature_at_its_own_value_changes_nothing(tiny_models):
    model = tiny_models["tiny-llama"]
    sae = hand_set_sae()
    tokens = model.to_tokens("The cat sat", prepend_bos=False)
    x = _resid(model, tokens, [])
    f = sae.encode(x)[:, 4]
    p = int(f.argmax())
    got = _resid(model, tokens, [(HOOK, steering_hook(sae, 4, float(f[p].detach()), "clamp", [p]))])
    torch.testing.assert_close(got, x)  # ε kept: only the feature's own term could move, and it did not


def test_steer_feature_reports_both_generations(tiny_models):
    model = tiny_models["tiny-llama"]
    sae = hand_set_sae()
    res = steer_feature(model, sae, 1, 50.0, ["The cat sat on"], max_activation=2.0, max_new_tokens=5)
    assert res.value == 100.0 and len(res.before) == len(res.after) == 1
    assert len(res.activation_before[0]) == len(res.tokens[0]) == len(res.activation_after[0])
    # re-encoded after the clamp: exactly 100 where the feature was active, 100 + (its negative pre-activation)
    # where it was not, since the encoder reads W_dec[j] back with gain 2 · 0.5 = 1
    after, before = res.activation_after[0], res.activation_before[0]
    assert all(95 < a <= 100 + 1e-3 for a in after)
    assert all(a == pytest.approx(100, abs=1e-3) for a, b in zip(after, before) if b > 0)
    with pytest.raises(InterpError, match="finite"):
        steer_feature(model, sae, 1, float("inf"), ["x"], 2.0)
    with pytest.raises(InterpError, match="out of range"):
        steer_feature(model, sae, 8, 1.0, ["x"], 2.0)


def test_examples_cannot_break_out_of_their_line():
    text = format_example(["Hello", "\n\nAnswer:", " Yes", " «x»"], {2})
    assert "\n" not in text and text.count("«") == 1 and "‹x›" in text


def test_balanced_accuracy_and_auroc_match_sklearn():
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    margins = [2.0, -1.0, 0.5, 3.0, -2.0, -0.5, 1.0, -3.0, 0.2]
    labels = [True, True, True, True, False, False, False, False, False]
    s = _score(margins, labels)
    assert s.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, [m > 0 for m in margins]))
    assert s.auroc == pytest.approx(roc_auc_score(labels, margins))
    assert s.low <= s.balanced_accuracy <= s.high and (s.n_positive, s.n_negative) == (4, 5)


@pytest.mark.parametrize("sample", [False, True])
def test_joint_batch_gives_the_texts_of_two_separate_runs(tiny_models, monkeypatch, sample):
    """Steered and unsteered copies generate in one batch (one generation's time); the texts, greedy or
    sampled, equal those of the two separate runs they replace."""
    import torch

    from saes import SAEConfig, make_sae
    from saes.features import steer as S

    model = tiny_models["tiny-llama"]
    torch.manual_seed(0)
    sae = make_sae(SAEConfig("topk", model.cfg.d_model, 48, k=4, hook_name="blocks.1.hook_resid_post"))
    prompts = ["The cat sat on the", "A", "Once upon a time there was"]
    joint = S.steer_feature(model, sae, 3, 8.0, prompts, 1.0, max_new_tokens=6, greedy=not sample, seed=3)
    monkeypatch.setattr(S, "MAX_JOINT_BATCH", 0)
    apart = S.steer_feature(model, sae, 3, 8.0, prompts, 1.0, max_new_tokens=6, greedy=not sample, seed=3)
    assert (joint.before, joint.after) == (apart.before, apart.after)
    assert joint.before != joint.after  # the steering did change the text
