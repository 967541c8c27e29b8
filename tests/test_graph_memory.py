"""The graph's memory limit follows the machine, and a refusal names a setting that the same check then
accepts (issue 41, item 3)."""

import re
from types import SimpleNamespace

import pytest

from interp.circuits.graph_memory import (MemoryLimit, check_graph_size, estimate_bytes, estimate_parts,
                                          machine_limit, model_bytes)
from interp.errors import InterpError

SMOLLM2 = dict(n_layers=30, d_model=576, d_vocab=49152, n_heads=9)
"""The embedded model's shape (config.json), with a transcoder at every layer, k 16."""


def _set(k=16, layers=30):
    return SimpleNamespace(layers={layer: SimpleNamespace(cfg=SimpleNamespace(k=k)) for layer in range(layers)})


def _refusal(n_pos, limit, cap=4096, batch=32) -> str:
    with pytest.raises(InterpError) as err:
        check_graph_size(n_pos, **SMOLLM2, transcoders=_set(), max_feature_nodes=cap, batch=batch, memory_limit=limit)
    return str(err.value)


def test_a_refusal_names_the_largest_cap_that_fits_and_the_check_accepts_it():
    limit = MemoryLimit(2 * 2**30)
    said = _refusal(100, limit)
    cap = int(re.search(r"--max-feature-nodes (\d+) fits", said).group(1))
    assert 1 <= cap < 4096
    check_graph_size(100, **SMOLLM2, transcoders=_set(), max_feature_nodes=cap, memory_limit=limit)  # accepted
    assert "over the 2.0 GB free on this machine" in said
    _refusal(100, limit, cap=cap + 1)  # and it is the largest


def test_a_prompt_too_long_for_any_cap_is_told_the_longest_prompt_that_fits():
    """The issue's case: 1,357 tokens, where cap 1 and batch 1 still need tens of gigabytes."""
    limit = MemoryLimit(21 * 2**30)
    assert estimate_bytes(1357, SMOLLM2["n_layers"], SMOLLM2["d_model"], SMOLLM2["d_vocab"], 16, 1, 1,
                          n_heads=9) > limit.host
    said = _refusal(1357, limit)
    assert "no --max-feature-nodes fits" in said
    longest = int(re.search(r"at most ([\d,]+) tokens", said).group(1).replace(",", ""))
    check_graph_size(longest, **SMOLLM2, transcoders=_set(), memory_limit=limit)  # accepted at the defaults
    _refusal(longest + 1, limit)
    assert said.count("\n") == 0


def test_a_device_too_small_for_the_batch_is_told_a_batch_that_fits():
    """On a GPU the frozen forward lives on the device and the rows in RAM: a small device names --batch."""
    parts = estimate_parts(512, SMOLLM2["n_layers"], SMOLLM2["d_model"], SMOLLM2["d_vocab"], 16, 4096, 32, n_heads=9)
    limit = MemoryLimit(host=parts.host + 2**30, device=parts.device // 2)
    said = _refusal(512, limit)
    assert "on the device" in said
    batch = int(re.search(r"--batch (\d+) fits", said).group(1))
    assert batch < 32
    check_graph_size(512, **SMOLLM2, transcoders=_set(), batch=batch, memory_limit=limit)


def test_the_limit_is_the_machines_free_memory(monkeypatch):
    import os

    monkeypatch.delenv("INTERP_GRAPH_MEMORY_GB", raising=False)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    free = machine_limit()
    assert 0 < free.host < total and free.device is None and free.where == "free on this machine"
    shape = SimpleNamespace(n_layers=30, d_model=576, d_head=64, n_heads=9, n_kv_heads=3, d_mlp=1536, d_vocab=49152)
    assert 0.4e9 < model_bytes(shape) < 0.7e9  # SmolLM2-135M in float32: 135M parameters, 0.54 GB
    assert machine_limit(model_bytes=model_bytes(shape)).host < free.host
    monkeypatch.setenv("INTERP_GRAPH_MEMORY_GB", "2")
    assert machine_limit() == MemoryLimit(2 * 2**30, None, "INTERP_GRAPH_MEMORY_GB")
    assert "INTERP_GRAPH_MEMORY_GB" in _refusal(128, machine_limit())
    monkeypatch.setenv("INTERP_GRAPH_MEMORY_GB", "lots")
    with pytest.raises(InterpError, match="number of gigabytes"):
        machine_limit()
