"""Reading circuits from the weights: QK and OV circuits, copying, composition and mimetic statistics.

Following Elhage et al. (2021, "A Mathematical Framework for Transformer Circuits"), in the
row-vector convention of TransformerLens (``x W``):

* a head's **QK circuit** ``W_Q W_Kᵀ`` (d_model × d_model) scores a query residual against
  a key residual; its **OV circuit** ``W_V W_O`` is what it writes for what it reads. Both
  are kept as :class:`transformer_lens.FactoredMatrix` (rank d_head) and never formed
  densely unless asked (:meth:`HeadWeights.dense`);
* the **full circuits** run through the embedding and unembedding, restricted to a token
  subset: ``W_E[S] W_Q W_Kᵀ W_E[S]ᵀ`` and ``W_E[S] W_V W_O W_U[:, S]``;
* the **copying score** of a head is ``Σ λ / Σ |λ|`` over the eigenvalues λ of its full OV
  circuit on the whole vocabulary, computed from the d_head × d_head matrix with the same
  non-zero eigenvalues;
* the **composition scores** of a writer head A and a later reader head B are
  ``‖W_A W_B‖_F / (‖W_A‖_F ‖W_B‖_F)`` with ``W_A = OV_A`` and ``W_B = QK_B`` (Q-composition),
  ``QK_Bᵀ`` (K-composition) or ``OV_B`` (V-composition), each against the same score of
  Gaussian matrices of the same factored shapes;
* the **mimetic statistics** (Trockman & Kolter 2023, "Mimetic Initialization of
  Self-Attention Layers"): ``cos(M, I) = tr M / (√d ‖M‖_F)`` and the z-score of M's
  diagonal against its off-diagonal entries, for M = QK and M = OV, per head and per layer
  (the layer's M is the sum over its heads).

Every statistic is computed from the factors, never from a d_model × d_model product.
GQA's shared K and V heads are expanded to the query heads that read them (head i uses KV
head ``i // (n_heads / n_kv_heads)``, as the model's own ``repeat_kv``). With
``fold=True`` the norms' gains are folded in: the reading layer's ``ln1`` gain scales the
rows of W_Q, W_K and W_V, and ``ln_final``'s gain the rows of W_U (a LayerNorm's centring
and bias are left out). For rotary models, QK is defined without the rotation by default
(``offset=None``), which equals the bilinear form of a query and a key at the same
position; ``offset=Δ`` inserts the rotation between a query at position m and a key at
m + Δ (Δ = −1: the previous token), ``W_Q R(Δ) W_Kᵀ``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from interp.errors import InterpError, check_index

__all__ = ["Composition", "HeadWeights", "Mimetic", "check_head", "composition_score", "composition_scores",
           "copying_rate", "copying_scores", "corpus_words", "full_circuit", "head_weights", "identity_stats",
           "mimetic_stats", "ov_promotes", "rope_rotation"]


@dataclass
class HeadWeights:
    """Every head's factors, GQA expanded: ``[layer, head, d_model, d_head]`` (``W_O``:
    ``[layer, head, d_head, d_model]``)."""

    W_Q: Tensor
    W_K: Tensor
    W_V: Tensor
    W_O: Tensor
    W_E: Tensor
    W_U: Tensor
    folded: bool
    rotary: bool
    rope_base: float | None

    @property
    def n_layers(self) -> int:
        return self.W_Q.shape[0]

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[1]

    def qk(self, layer: int, head: int, offset: int | None = None):
        """The head's QK circuit as a FactoredMatrix (``W_Q R(offset)``, ``W_Kᵀ``)."""
        from transformer_lens import FactoredMatrix

        q = self.W_Q[layer, head]
        if offset is not None and self.rotary:
            q = q @ rope_rotation(q.shape[-1], offset, self.rope_base, q.dtype)
        return FactoredMatrix(q, self.W_K[layer, head].T)

    def ov(self, layer: int, head: int):
        """The head's OV circuit as a FactoredMatrix (``W_V``, ``W_O``)."""
        from transformer_lens import FactoredMatrix

        return FactoredMatrix(self.W_V[layer, head], self.W_O[layer, head])

    def dense(self, kind: str, layer: int, head: int, offset: int | None = None) -> Tensor:
        """The d_model × d_model matrix itself (only when asked)."""
        return (self.qk(layer, head, offset) if kind == "qk" else self.ov(layer, head)).AB


def _gain(norm) -> Tensor | None:
    w = getattr(norm, "w", None)
    return None if w is None else w.detach().float()


def _rope_base(model) -> float | None:
    cfg = model.original_model.config
    params = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    base = params.get("rope_theta") if isinstance(params, dict) else None
    return float(base or getattr(cfg, "rope_theta", None) or model.cfg.rotary_base or 10000.0)


def head_weights(model, fold: bool = False) -> HeadWeights:
    """The model's attention weights per query head (K/V heads expanded), float32 on the CPU,
    with the norms' gains folded in when ``fold``."""
    with torch.no_grad():
        wq, wk, wv, wo = (w.detach().float().cpu() for w in (model.W_Q, model.W_K, model.W_V, model.W_O))
        n_heads = wq.shape[1]
        if wk.shape[1] != n_heads:  # GQA: query head i reads KV head i // group
            group = n_heads // wk.shape[1]
            wk, wv = wk.repeat_interleave(group, 1), wv.repeat_interleave(group, 1)
        w_e, w_u = model.W_E.detach().float().cpu(), model.W_U.detach().float().cpu()
        if fold:
            for l in range(wq.shape[0]):
                g = _gain(model.blocks[l].ln1)
                if g is not None:
                    g = g.cpu()[None, :, None]
                    wq[l], wk[l], wv[l] = wq[l] * g, wk[l] * g, wv[l] * g
            gf = _gain(model.ln_final)
            if gf is not None:
                w_u = w_u * gf.cpu()[:, None]
    rotary = getattr(model.cfg, "positional_embedding_type", "") == "rotary"
    return HeadWeights(wq, wk, wv, wo, w_e, w_u, fold, rotary, _rope_base(model) if rotary else None)


def rope_rotation(d_head: int, offset: int, base: float, dtype=torch.float32) -> Tensor:
    """``R`` with ``rope(q, m) · rope(k, m + offset) = q R kᵀ`` for the rotate-half layout
    (dimension pairs i and i + d_head/2 at frequency ``base^(−2i/d_head)``)."""
    half = d_head // 2
    theta = offset * base ** (-torch.arange(half, dtype=torch.float64) * 2 / d_head)
    c, s = torch.cos(theta), torch.sin(theta)
    r = torch.zeros(d_head, d_head, dtype=torch.float64)
    i = torch.arange(half)
    r[i, i], r[i + half, i + half] = c, c
    r[i, i + half], r[i + half, i] = -s, s
    return r.to(dtype)


def check_head(hw: HeadWeights, layer: int, head: int) -> tuple[int, int]:
    return check_index(layer, hw.n_layers, "layer"), check_index(head, hw.n_heads, "head")


def full_circuit(hw: HeadWeights, kind: str, layer: int, head: int, tokens: list[int],
                 offset: int | None = None) -> Tensor:
    """``[|S|, |S|]`` over the token ids ``tokens``: QK ``W_E[S] W_Q W_Kᵀ W_E[S]ᵀ`` (query rows,
    key columns), or OV ``W_E[S] W_V W_O W_U[:, S]`` (source rows, output-logit columns)."""
    layer, head = check_head(hw, layer, head)
    if not tokens:
        raise InterpError("the token subset is empty")
    e = hw.W_E[tokens]
    if kind == "qk":
        m = hw.qk(layer, head, offset)
        return (e @ m.A) @ (m.B @ e.T)
    if kind == "ov":
        return (e @ hw.W_V[layer, head]) @ (hw.W_O[layer, head] @ hw.W_U[:, tokens])
    raise InterpError(f"unknown circuit {kind!r}; choose qk or ov")


def ov_promotes(hw: HeadWeights, layer: int, head: int, tokens: list[int], k: int = 5
                ) -> tuple[Tensor, Tensor]:
    """What the head writes when it attends to each token of ``tokens``: the ``k`` largest logits of
    ``W_E[t] W_V W_O W_U`` over the whole vocabulary, as ``(values, ids)``, each ``[|tokens|, k]``."""
    layer, head = check_head(hw, layer, head)
    if not tokens:
        raise InterpError("the token subset is empty")
    logits = (hw.W_E[tokens] @ hw.W_V[layer, head]) @ (hw.W_O[layer, head] @ hw.W_U)
    top = logits.topk(min(k, logits.shape[-1]), dim=-1)
    return top.values, top.indices


def copying_scores(hw: HeadWeights) -> Tensor:
    """``[layer, head]``: ``Σ λ / Σ |λ|`` over the eigenvalues of ``W_E W_V W_O W_U`` on the whole
    vocabulary (from ``W_O W_U W_E W_V``, d_head × d_head, the same non-zero eigenvalues)."""
    ue = hw.W_U.double() @ hw.W_E.double()  # d_model × d_model: the unembedding read of each embedding
    out = torch.empty(hw.n_layers, hw.n_heads)
    for l in range(hw.n_layers):
        for h in range(hw.n_heads):
            small = hw.W_O[l, h].double() @ ue @ hw.W_V[l, h].double()  # d_head × d_head
            lam = torch.linalg.eigvals(small)
            out[l, h] = (lam.sum().real / lam.abs().sum()).item()
    return out


def copying_rate(hw: HeadWeights, token_ids: list[int], k: int = 1) -> Tensor:
    """``[layer, head]``: the fraction of ``token_ids`` whose own logit is among the ``k`` largest when the
    head's OV circuit reads the token (``W_E[t] W_V W_O W_U``), the logits restricted to ``token_ids``.
    Where ``Σλ/Σ|λ|`` sits near ±1 for a third of a model's heads (a few large eigenvalues decide it),
    this rate spreads them: it says how many of a set of ordinary words a head actually copies."""
    ids = torch.as_tensor(token_ids, dtype=torch.long)
    if len(ids) < 2 or len(set(token_ids)) != len(ids):
        raise InterpError(f"the copying rate needs at least two distinct tokens; got {len(ids)} ({len(set(token_ids))} distinct)")
    if not 1 <= k < len(ids):
        raise InterpError(f"k = {k} must be at least 1 and below the {len(ids)} tokens")
    emb, unemb = hw.W_E[ids].float(), hw.W_U[:, ids].float()  # [n, d], [d, n]
    out = torch.empty(hw.n_layers, hw.n_heads)
    own = torch.arange(len(ids))
    for l in range(hw.n_layers):
        for h in range(hw.n_heads):
            logits = ((emb @ hw.W_V[l, h].float()) @ hw.W_O[l, h].float()) @ unemb  # [n attended, n output]
            mine = logits[own, own]
            out[l, h] = ((logits > mine[:, None]).sum(1) < k).float().mean()
    return out


def corpus_words(model, n: int = 500, corpus: str = "bbc-news") -> list[int]:
    """The first ``n`` distinct tokens of a shipped corpus that are a whole word after a space (letters only,
    three or more): ordinary words for :func:`copying_rate`."""
    from interp.corpus import documents

    ids: list[int] = []
    seen: set[int] = set()
    for doc in documents(corpus):
        for t in model.tokenizer.encode(doc, add_special_tokens=False):
            word = model.tokenizer.decode([t])
            if t not in seen and word.startswith(" ") and word[1:].isalpha() and len(word) > 3:
                seen.add(t)
                ids.append(t)
        if len(ids) >= n:
            break
    return ids[:n]


def composition_score(a: Tensor, b: Tensor) -> float:
    """The textbook form on dense matrices: ``‖A B‖_F / (‖A‖_F ‖B‖_F)``."""
    return ((a @ b).norm() / (a.norm() * b.norm())).item()


@dataclass
class Composition:
    """Q-, K- and V-composition of every (writer, later reader) head pair."""

    scores: dict[str, Tensor]
    """``q``/``k``/``v`` → ``[writer, reader]`` over heads in layer-major order (NaN unless the
    writer's layer is before the reader's)."""
    baseline: dict[str, tuple[float, float]]
    """The same score of Gaussian factors of the same shapes: (mean, standard deviation)."""
    heads: list[str]
    folded: bool

    def top(self, kind: str, k: int = 10) -> list[dict]:
        s = self.scores[kind].nan_to_num(-1.0)
        idx = s.flatten().topk(k).indices.tolist()
        mean, std = self.baseline[kind]
        n = len(self.heads)
        return [{"writer": self.heads[i // n], "reader": self.heads[i % n], "score": s.flatten()[i].item(),
                 "z": (s.flatten()[i].item() - mean) / std} for i in idx]

    def figure(self):
        from interp.figures import composition_figure

        return composition_figure(self)


def _fro2(ga: Tensor, m: Tensor, gb: Tensor) -> Tensor:
    """``‖V M Kᵀ‖_F²`` from ``ga = VᵀV``, ``gb = KᵀK`` and M ``[..., h, h]``: ``tr(ga M gb Mᵀ)``."""
    return ((ga @ m) * (m @ gb)).sum((-2, -1))


def composition_scores(hw: HeadWeights, baseline_samples: int = 64, seed: int = 0) -> Composition:
    """All three composition scores from d_head × d_head matrices (never a d_model × d_model
    product), one writer layer at a time against every later reader head; and their random
    baselines."""
    L, H = hw.n_layers, hw.n_heads
    n = L * H
    q, k, v = (w.reshape(n, *w.shape[2:]) for w in (hw.W_Q, hw.W_K, hw.W_V))  # [n, d, h]
    o = hw.W_O.reshape(n, *hw.W_O.shape[2:])  # [n, h, d]
    gram = lambda x: x.transpose(1, 2).double() @ x.double()  # noqa: E731
    gq, gk, gv = gram(q), gram(k), gram(v)
    go = o.double() @ o.transpose(1, 2).double()
    ov_norm = (gv * go).sum((-2, -1)).sqrt()  # ‖V O‖_F = √tr(VᵀV O Oᵀ)
    qk_norm = (gq * gk).sum((-2, -1)).sqrt()
    scores = {x: torch.full((n, n), float("nan")) for x in "qkv"}
    h = q.shape[-1]
    for la in range(L - 1):
        a = slice(la * H, (la + 1) * H)
        b = slice((la + 1) * H, n)
        o_flat = o[a].reshape(H * h, -1)  # writer heads' W_O rows

        def inner(x: Tensor) -> Tensor:  # [writer, reader, h, h]: O_A X_B for every pair
            m = o_flat @ x[b].permute(1, 0, 2).reshape(x.shape[1], -1)
            return m.reshape(H, h, -1, h).permute(0, 2, 1, 3).double()

        for kind, x, g_right, right_norm in (("q", q, gk, qk_norm), ("k", k, gq, qk_norm), ("v", v, go, ov_norm)):
            fro = _fro2(gv[a][:, None], inner(x), g_right[b][None]).clamp_min(0).sqrt()
            scores[kind][a, b] = (fro / (ov_norm[a][:, None] * right_norm[b][None])).float()
    baseline = _random_baseline(q.shape[1], q.shape[2], baseline_samples, seed)
    return Composition(scores, baseline, [f"L{l}H{h_}" for l in range(L) for h_ in range(H)], hw.folded)


def _random_baseline(d: int, h: int, samples: int, seed: int) -> dict[str, tuple[float, float]]:
    """Composition scores of i.i.d. Gaussian factors of the model's shapes (d_model × d_head)."""
    gen = torch.Generator().manual_seed(seed)
    out = {x: [] for x in "qkv"}
    for _ in range(samples):
        va, oa, qb, kb, vb, ob = (torch.randn(*s, generator=gen, dtype=torch.float64)
                                  for s in ((d, h), (h, d), (d, h), (d, h), (d, h), (h, d)))
        for x, (b1, b2) in (("q", (qb, kb.T)), ("k", (kb, qb.T)), ("v", (vb, ob))):
            num = (va @ ((oa @ b1) @ b2)).norm()
            den = (va @ oa).norm() * (b1 @ b2).norm()
            out[x].append((num / den).item())
    return {x: (sum(v) / len(v), float(torch.tensor(v).std())) for x, v in out.items()}


def identity_stats(a: Tensor, b: Tensor) -> tuple[float, float]:
    """For ``M = A B`` (``A [d, r]``, ``B [r, d]``), from the factors: ``cos(M, I) = tr M / (√d ‖M‖_F)``
    and the z-score ``(mean diag − mean off-diag) / std off-diag``."""
    a, b = a.double(), b.double()
    d = a.shape[0]
    diag = (a * b.T).sum(1)
    trace = diag.sum()
    fro2 = ((a.T @ a) * (b @ b.T)).sum()
    total = a.sum(0) @ b.sum(1)
    m_off = d * d - d
    mean_off = (total - trace) / m_off
    var_off = (fro2 - (diag ** 2).sum()) / m_off - mean_off ** 2
    cos = trace / (math.sqrt(d) * fro2.sqrt())
    z = (diag.mean() - mean_off) / var_off.clamp_min(1e-30).sqrt()
    return cos.item(), z.item()


@dataclass
class Mimetic:
    """Identity-likeness of QK and OV against depth."""

    head: dict[str, Tensor]
    """``qk_cos``, ``qk_z``, ``ov_cos``, ``ov_z`` → ``[layer, head]``."""
    layer: dict[str, Tensor]
    """The same → ``[layer]``, for the layer's summed circuit."""
    folded: bool
    offset: int | None
    extra: dict = field(default_factory=dict)

    def figure(self):
        from interp.figures import mimetic_figure

        return mimetic_figure(self)


def mimetic_stats(hw: HeadWeights, offset: int | None = None) -> Mimetic:
    """cos(M, I) and the diagonal z-score of QK and OV for every head and every layer."""
    L, H = hw.n_layers, hw.n_heads
    head = {k: torch.empty(L, H) for k in ("qk_cos", "qk_z", "ov_cos", "ov_z")}
    layer = {k: torch.empty(L) for k in head}
    for l in range(L):
        qs, ks, vs, os_ = [], [], [], []
        for h in range(H):
            qk, ov = hw.qk(l, h, offset), hw.ov(l, h)
            head["qk_cos"][l, h], head["qk_z"][l, h] = identity_stats(qk.A, qk.B)
            head["ov_cos"][l, h], head["ov_z"][l, h] = identity_stats(ov.A, ov.B)
            qs.append(qk.A)
            ks.append(qk.B)
            vs.append(ov.A)
            os_.append(ov.B)
        layer["qk_cos"][l], layer["qk_z"][l] = identity_stats(torch.cat(qs, 1), torch.cat(ks, 0))
        layer["ov_cos"][l], layer["ov_z"][l] = identity_stats(torch.cat(vs, 1), torch.cat(os_, 0))
    return Mimetic(head, layer, hw.folded, offset)
