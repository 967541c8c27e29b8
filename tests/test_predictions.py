"""Per-token loss and next tokens of one prompt, against a naive loop."""

import math

import pytest
import torch

from interp.errors import InterpError
from interp.predictions import predict
from interp.tokens import to_tokens


def test_losses_and_top_tokens_equal_a_naive_loop(tiny):
    prompt = "The Eiffel Tower is located in the city of"
    pred = predict(tiny, prompt, k=5)
    ids = to_tokens(tiny, prompt)[0]
    assert len(pred.tokens) == len(ids) == len(pred.losses) and math.isnan(pred.losses[0])
    with torch.no_grad():
        for i in range(1, len(ids)):  # one forward per prefix: the loss of token i given the ones before
            logits = tiny(ids[None, :i])[0, -1].float()
            assert pred.losses[i].item() == pytest.approx(-logits.log_softmax(-1)[ids[i]].item(), abs=1e-4)
        probs = tiny(ids[None])[0, -1].float().softmax(-1)
    top = probs.topk(5)
    assert pred.top_probs == pytest.approx(top.values.tolist(), abs=1e-5)
    assert pred.top_tokens == [tiny.tokenizer.decode([int(t)]) for t in top.indices]
    assert pred.mean_loss == pytest.approx(pred.losses[1:].mean().item())
    fig = pred.figure()
    assert list(fig.data[0].y)[1:] == pytest.approx(pred.losses[1:].tolist())
    assert pred.to_dict()["losses"][0] is None


def test_bad_input(tiny_models):
    model = tiny_models["tiny-llama"]
    with pytest.raises(InterpError, match="empty prompt"):
        predict(model, "  ")
    with pytest.raises(InterpError, match="at least 1"):
        predict(model, "hi", k=0)
