"""The frozen local replacement model of one prompt (Ameisen et al. 2025): every MLP with a transcoder
is its transcoder's features, skip path and b_dec plus an error node; the attention patterns and
every normalisation scale (on Gemma also the post-attention and post-MLP norms) are the clean run's. With the feature activations fixed, every
pre-activation and logit is an affine function of the embeddings, the features and the error
nodes, which is what makes an attribution graph's edges exact.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from interp.architectures import architecture

__all__ = ["clean_parts", "clean_run", "decoder_bias", "decoder_rows", "decoders_into", "frozen_forward", "skip_path"]


@torch.no_grad()
def clean_run(model, transcoders, tokens: Tensor) -> dict:
    """The clean run: logits, each transcoder's input and output, every MLP output, the embedding, and the
    values the frozen model keeps (norm scales, attention patterns)."""
    L = model.cfg.n_layers
    # Every norm's scale (Gemma's post-attention and post-MLP norms too: interp.architectures) and every
    # attention pattern: with these fixed, the model is linear in its leaves.
    held = [f"{norm}.hook_scale" for norm in architecture(model).frozen_norms] + ["attn.hook_pattern"]
    frozen = [n for n in [f"blocks.{l}.{h}" for l in range(L) for h in held] + ["ln_final.hook_scale"]
              if n in model.hook_dict]
    names = set(frozen) | {"hook_embed"} | {f"blocks.{l}.{h}" for l in range(L) for h in ("hook_mlp_out", "hook_resid_post")}
    for layer in transcoders.layers:
        names |= {transcoders.input_hook(layer), transcoders.output_hook(layer)}
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    return {"logits": logits[0].float(), "cache": cache, "frozen": frozen}


@torch.no_grad()
def clean_parts(model, transcoders, cache) -> tuple[dict[int, Tensor], dict[int, Tensor], dict[int, Tensor]]:
    """Each layer's part of the frozen model on the clean run. Its MLP leaf: with a transcoder, the MLP
    output minus the skip path (features + b_dec + error); without one, the whole MLP output. And for
    each transcoder its pre-activations and activations, 0 at the first position (the attention sink,
    whose MLP output is all error node). Returns (leaves [pos, d_model], pre-activations, activations
    [pos, d_sae]), each a dict by layer."""
    leaves, pre, acts = {}, {}, {}
    for layer in range(model.cfg.n_layers):
        tc = transcoders.layers.get(layer)
        if tc is None:
            leaves[layer] = cache[f"blocks.{layer}.hook_mlp_out"][0].float()
            continue
        x = cache[transcoders.input_hook(layer)][0].float()
        pre[layer] = tc.pre_acts(x).float()
        acts[layer] = tc.activation(pre[layer]).float()
        acts[layer][0] = 0
        leaves[layer] = cache[transcoders.output_hook(layer)][0].float() - skip_path(tc, x)
    return leaves, pre, acts


def skip_path(tc, x: Tensor) -> Tensor | float:
    """A transcoder's skip path alone, in the output's units (linear in x; 0 without W_skip)."""
    if getattr(tc, "W_skip", None) is None:
        return 0.0
    return torch.nn.functional.linear(x.to(tc.W_skip.dtype) * tc.input_scale, tc.W_skip) / tc.target_scale


def decoder_bias(tc) -> Tensor:
    return (tc.b_dec / tc.target_scale).float()


def frozen_forward(model, transcoders, tokens: Tensor, clean: dict, mlp_const: dict[int, Tensor], batch: int,
                   embed: Tensor | None = None, respond: dict | None = None, length: int | None = None):
    """One forward pass of the frozen replacement model over ``batch`` copies of the prompt.

    Attention patterns and norm scales are the clean run's. Layer l's MLP output is ``mlp_const[l]``
    (a leaf: its gradient is ∂/∂y_l) plus, with a transcoder, its skip path on this pass's input. With
    ``respond`` (``{layer: (mask [pos, d_sae], pre_clean [pos, d_sae])}``), active features follow
    their pre-activations linearly (a_new = a + Δpre where active): the frozen intervention.
    Only the last position is unembedded (every node of a graph reads the next token's logits there);
    the unembedding's input is ``inputs["unembed"]`` ([batch, 1, d_model]). With ``length``, the pass runs
    over the prompt's first ``length`` positions only: with causal attention they are the whole prompt's
    first positions exactly.
    Returns (logits [batch, 1, vocab], embedding leaf, {layer: MLP leaf}, {layer: input})."""
    P = tokens.shape[1] if length is None else length
    tokens = tokens[:, :P]
    cache = clean["cache"]
    E = (embed if embed is not None else cache["hook_embed"][0])[:P].expand(batch, P, -1).clone().requires_grad_(True)
    leaves, inputs = {}, {}
    def last(x, *, hook):
        inputs["unembed"] = x[:, -1:]
        return inputs["unembed"]

    hooks = [("hook_embed", lambda x, hook: E.to(x.dtype)), ("unembed.hook_in", last)]
    for name in clean["frozen"]:
        hooks.append((name, lambda x, hook, v=_first(cache[name], P): v.expand(x.shape).to(x.dtype)))
    for layer in range(model.cfg.n_layers):
        leaves[layer] = mlp_const[layer][:P].expand(batch, P, -1).clone().requires_grad_(True)
        tc = transcoders.layers.get(layer)
        if tc is not None:
            def keep(x, *, hook, layer=layer):
                inputs[layer] = x
                return x

            hooks.append((transcoders.input_hook(layer), keep))

        def put(y, *, hook, layer=layer, tc=tc):
            out = leaves[layer]
            if tc is not None:
                x = inputs[layer]
                out = out + skip_path(tc, x)
                for source, rows in decoders_into(transcoders, layer) if respond is not None else ():
                    if source in respond:  # each source layer's features moved with their pre-activations
                        mask, pre0 = (v[:P] for v in respond[source])
                        src = transcoders.layers[source]
                        delta = (src.pre_acts(inputs[source]).float() - pre0) * mask
                        out = out + delta @ rows
            return out.to(y.dtype)

        hooks.append((f"blocks.{layer}.hook_mlp_out" if tc is None else transcoders.output_hook(layer), put))
    # Only the leaves need gradients: with the weights' off, no layer saves its input for a weight
    # gradient (the retained graph of a 128-token batch of 32 was 3.7 GB with them on).
    weights = [w for mod in [model, *transcoders.layers.values()] for w in mod.parameters() if w.requires_grad]
    try:
        for w in weights:
            w.requires_grad_(False)
        with warnings.catch_warnings():  # the bridge notes that hooked norm scales take its reconstructed path
            warnings.filterwarnings("ignore", message=".*edited hook_scale.*")
            logits = model.run_with_hooks(tokens.expand(batch, P), fwd_hooks=hooks)
    finally:
        for w in weights:
            w.requires_grad_(True)
    return logits, E, leaves, inputs


def _first(frozen: Tensor, length: int) -> Tensor:
    """A frozen value's first ``length`` positions: a norm scale [batch, pos, 1], or an attention pattern
    [batch, head, query, key] (its first queries over their keys)."""
    return frozen[..., :length, :length] if frozen.dim() == 4 else frozen[:, :length]


def decoder_rows(tc) -> Tensor:
    """Decoder rows in the output's units (a dictionary trained in this process may still carry its scale)."""
    return (tc.W_dec / tc.target_scale).float()


def decoders_into(transcoders, layer: int) -> list[tuple[int, Tensor]]:
    """The decoders that write into ``layer``'s MLP output, in the output's units: (source layer, rows
    [d_sae, d_model]) for each source. A per-layer set: its own layer's; a cross-layer transcoder
    (:class:`saes.clt.CLTSet`): every layer's at or below."""
    into = getattr(transcoders, "decoders_into", None)
    if into is not None:
        return [(i, rows.float()) for i, rows in into(layer)]
    tc = transcoders.layers.get(layer)
    return [] if tc is None else [(layer, decoder_rows(tc))]
