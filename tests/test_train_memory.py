"""The training memory estimate (saes.train_memory) against what the store and the dictionaries really hold,
and its refusal."""

import pytest

from saes.activations import ActivationStore
from saes.clt_training import TrainableCLT
from saes.config import SAEConfig
from saes.io import make_sae
from saes.train import TrainConfig
from saes.train_memory import check_training_memory, training_memory

IN, OUT = "blocks.{l}.hook_resid_mid", "blocks.{l}.hook_mlp_out"


def _cfg(corpus, **kw):
    base = dict(hook=IN, hook_out=OUT, layers=[0, 1, 2], architecture="topk", d_sae=48, k=4, tokens=128 * 8,
                batch_size=128, seq_len=32, block_rows=16, corpus=corpus, max_norm_ratio=0.0)
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize("clt", [False, True])
def test_the_estimate_counts_the_block_the_store_holds_and_the_dictionaries_parameters(tiny_models, corpus, clt):
    model = tiny_models["tiny-llama"]
    cfg = _cfg(corpus, clt=clt)
    store = ActivationStore(model, cfg.hooks(), corpus, cfg.batch_size, cfg.seq_len, cfg.block_rows, max_norm_ratio=0)
    m = training_memory(cfg, model.cfg.d_model, store.tokens_per_block, store.model_batch, cfg.seq_len, process=0)
    held = sum(a.numel() * a.element_size() for a in store.block(0).values())
    assert m.block == 2 * held  # the block in use and the next one being built
    assert m.sample == min(8192, store.tokens_per_block) * 6 * model.cfg.d_model * 4
    d = model.cfg.d_model
    if clt:
        params = sum(p.numel() for p in TrainableCLT(3, d, 48, "topk", k=4).parameters())
    else:
        params = 3 * sum(p.numel() for p in make_sae(SAEConfig("topk", d, 48, hook_name="x", k=4, hook_out="y",
                                                                skip=True)).parameters())
    optimiser = 5 * 4 * params  # weights, gradients, Adam's two moments (and temporaries), fp32
    assert optimiser < m.dictionaries < optimiser + 4 * cfg.batch_size * 3 * (6 * 48 + 6 * d) + 1
    assert m.host == m.block + m.harvest + m.sample + m.dictionaries


def test_a_run_that_will_not_fit_is_refused_in_one_line_before_it_harvests(corpus, tmp_path, monkeypatch):
    from interp.errors import InterpError
    from tests.test_cli import assert_one_line_error

    m = training_memory(_cfg(corpus, d_sae=4096), 64, 10_000, 8, 32, process=0)
    with pytest.raises(InterpError, match="GB more memory but 0.0 GB is free.*lower --block-rows, --d-sae"):
        check_training_memory(m, available=1000)
    check_training_memory(m, available=2 * m.host)
    monkeypatch.setenv("INTERP_TRAIN_MEMORY_GB", "0.001")
    assert_one_line_error("sae", "train", "--model", "tiny-llama", "--corpus", corpus, "--transcoder", "--layers",
                          "0-2", "--out", str(tmp_path / "x"), message="more memory but")
    assert not (tmp_path / "x").exists()
