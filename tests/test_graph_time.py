"""Causal chunks of a graph's rows (issue 42): a target's backward runs over the prompt's first positions
only, through a frozen forward of that prefix, and rows are cut into chunks that cost the least."""

import itertools

import numpy as np
import pytest
import torch

from interp.circuits.graph_time import PREFIXES, causal_chunks, chunk_cost, prefix_lengths
from interp.circuits.local_replacement import clean_parts, clean_run, frozen_forward
from tests.test_graph import PROMPT, random_set


def _cost(chunks, layers, lengths) -> float:
    return sum(chunk_cost(len(c), int(lengths[c].max()), int(layers[c].max())) for c in chunks)


@pytest.mark.parametrize("seed", range(4))
def test_chunks_cost_the_least_of_every_cut_of_the_sorted_rows(seed):
    """The dynamic programme against every way of cutting the rows (sorted by layer, then prefix) into
    runs of at most ``batch``, enumerated."""
    rng = np.random.default_rng(seed)
    n, batch = 10, 4
    layers, lengths = rng.integers(0, 6, n), rng.integers(1, 5, n) * 8
    chunks = causal_chunks(layers, lengths, batch)
    assert sorted(np.concatenate(chunks).tolist()) == list(range(n))  # every row once
    assert all(1 <= len(c) <= batch for c in chunks)
    order = np.lexsort((lengths, layers))
    best = float("inf")
    for cuts in itertools.product([0, 1], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        runs = [order[a:b] for a, b in zip(bounds, bounds[1:])]
        if all(len(r) <= batch for r in runs):
            best = min(best, _cost(runs, layers, lengths))
    assert _cost(chunks, layers, lengths) == pytest.approx(best)
    # and never more than chunking by layer alone, each chunk over the whole prompt
    by_layer = [order[i:i + batch] for i in range(0, n, batch)]
    assert _cost(chunks, layers, lengths) <= sum(chunk_cost(len(c), int(lengths.max()), int(layers[c].max()))
                                                 for c in by_layer)


def test_prefix_lengths_round_up_to_eighths_of_the_prompt():
    assert prefix_lengths([0, 1, 7, 8, 126, 127], 128).tolist() == [16, 16, 16, 16, 128, 128]
    assert prefix_lengths(range(5), 5).tolist() == [1, 2, 3, 4, 5]  # shorter than PREFIXES: every length
    assert len(set(prefix_lengths(range(200), 200).tolist())) == PREFIXES


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-gpt2", "tiny-gemma3"])
def test_a_prefix_forward_is_the_whole_prompts_first_positions(tiny_models, name):
    """Inputs and gradients of a frozen forward of the first k positions equal the whole prompt's there:
    causal attention, frozen patterns (Gemma's sliding windows among them) and norm scales."""
    model = tiny_models[name]
    tset = random_set(model)
    from interp.tokens import to_tokens

    tokens = to_tokens(model, PROMPT)
    P, L = tokens.shape[1], model.cfg.n_layers
    clean = clean_run(model, tset, tokens)
    const, _, _ = clean_parts(model, tset, clean["cache"])
    k = P // 2
    with torch.enable_grad():
        _, E, leaves, inputs = frozen_forward(model, tset, tokens, clean, const, 1)
        _, E_k, leaves_k, inputs_k = frozen_forward(model, tset, tokens, clean, const, 1, length=k)
        top = L - 1
        torch.testing.assert_close(inputs_k[top], inputs[top][:, :k], rtol=1e-4, atol=1e-5)
        inject = torch.randn(3, 1, k, model.cfg.d_model, generator=torch.Generator().manual_seed(0))
        full = torch.zeros(3, 1, P, model.cfg.d_model)
        full[:, :, :k] = inject
        want = torch.autograd.grad([inputs[top]], [E] + [leaves[i] for i in range(top)], [full],
                                   is_grads_batched=True)
        got = torch.autograd.grad([inputs_k[top]], [E_k] + [leaves_k[i] for i in range(top)], [inject],
                                  is_grads_batched=True)
    for w, g in zip(want, got):
        assert not w[:, :, k:].any()  # nothing after the targets' positions
        torch.testing.assert_close(g, w[:, :, :k], rtol=1e-4, atol=1e-5 * float(w.abs().max()))  # float noise
