"""What the model predicts on one prompt: each token's loss and the top next tokens.

The loss of token ``i`` is its negative log-likelihood given the tokens before it,
``−log softmax(logits[i − 1])[token_i]``; the first token has no context and no loss.
The top next tokens are the ``k`` most likely continuations after the last position.
One forward pass gives both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from interp.errors import InterpError
from interp.tokens import display_token, str_tokens, to_tokens

__all__ = ["Prediction", "predict"]


@dataclass
class Prediction:
    """Per-token loss of a prompt and its most likely next tokens."""

    tokens: list[str]
    losses: Float[Tensor, " pos"]
    """Nats; ``losses[i]`` is the loss of ``tokens[i]`` given the ones before it (NaN at 0)."""
    top_tokens: list[str]
    top_probs: list[float]
    seconds: float
    axes: tuple[str, ...] = ("pos",)

    @property
    def mean_loss(self) -> float:
        """Mean loss over every token that has context."""
        return float(self.losses[1:].mean()) if len(self.losses) > 1 else float("nan")

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "losses": [None if x != x else round(x, 5) for x in self.losses.tolist()],
                "mean_loss": self.mean_loss, "top_next": [{"token": t, "prob": p} for t, p in
                                                          zip(self.top_tokens, self.top_probs)],
                "seconds": self.seconds}

    def figure(self):
        """This result as a plotly figure (:func:`interp.figures.prediction_figure`)."""
        from interp.figures import prediction_figure

        return prediction_figure(self)


@torch.no_grad()
def predict(model, prompt: str, k: int = 10) -> Prediction:
    """Each token's loss and the ``k`` most likely next tokens of ``prompt``, in one forward pass."""
    if k < 1:
        raise InterpError(f"top-k needs k of at least 1 (got {k})")
    t0 = time.perf_counter()
    tokens = to_tokens(model, prompt)
    logp = model(tokens)[0].float().log_softmax(-1)
    nll = -logp[:-1].gather(-1, tokens[0, 1:, None])[:, 0]
    losses = torch.cat([torch.full((1,), float("nan"), device=nll.device), nll]).cpu()
    top = logp[-1].exp().topk(min(k, logp.shape[-1]))
    return Prediction(str_tokens(model, tokens[0]), losses,
                      [display_token(model.tokenizer, int(i)) for i in top.indices],
                      top.values.tolist(), time.perf_counter() - t0)
