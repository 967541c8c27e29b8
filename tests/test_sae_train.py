"""SAE training: the activation store, exact resume, DDP equivalence, numerical failures."""

import json
from pathlib import Path

import pytest
import torch

from interp.errors import InterpError
from saes import load_sae
from saes.activations import ActivationStore
from saes.train import TrainConfig, train
from tests.conftest import TINY, news_corpus, run_ddp_worker

ROOT = Path(__file__).resolve().parent.parent
HOOK = "blocks.1.hook_resid_post"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A small local corpus: 600 BBC articles, so the runs stay within it."""
    return news_corpus(tmp_path_factory.mktemp("corpus"), 600)


def _cfg(corpus=None, **kw):
    base = dict(hook=HOOK, architecture="topk", d_sae=128, k=8, tokens=256 * 8, batch_size=256, seq_len=32,
                block_rows=32, corpus=corpus, lr=1e-3, log_every=4, checkpoint_every=4)
    return TrainConfig(**{**base, **kw})


def test_store_stops_at_the_layer_and_matches_a_full_forward(tiny_models, corpus):
    model = tiny_models["tiny-gpt2"]  # prepends BOS: the store must drop it
    store = ActivationStore(model, ["blocks.0.hook_resid_post", HOOK], corpus, batch_size=64, seq_len=16,
                            block_rows=8)
    assert store.batches_per_block == 2
    b0, b0_again = store.batch(0), store.batch(0)
    assert all(torch.equal(b0[h], b0_again[h]) for h in b0) and b0[HOOK].shape == (64, model.cfg.d_model)
    from interp.corpus import token_rows

    rows = torch.stack(list(token_rows(model, corpus, 8 * 16, 16)))
    tokens = torch.cat([torch.full((8, 1), model.tokenizer.bos_token_id), rows], 1)
    _, cache = model.run_with_cache(tokens)
    everything = cache[HOOK][:, 1:].reshape(-1, model.cfg.d_model)  # the BOS position dropped
    both = torch.cat([store.batch(0)[HOOK], store.batch(1)[HOOK]])
    # the same multiset of vectors, shuffled: compare after sorting rows by their sum
    key = lambda t: t[t.sum(1).argsort()]
    torch.testing.assert_close(key(both), key(everything), rtol=1e-4, atol=1e-5)


def test_store_drops_the_sink_position_without_bos(tiny_models, corpus):
    model = tiny_models["tiny-llama"]  # no BOS: position 0 of each row is the attention sink
    store = ActivationStore(model, [HOOK], corpus, batch_size=8 * 15, seq_len=16, block_rows=8)
    from interp.corpus import token_rows

    rows = torch.stack(list(token_rows(model, corpus, 8 * 16, 16)))
    _, cache = model.run_with_cache(rows)
    kept = cache[HOOK][:, 1:].reshape(-1, model.cfg.d_model)
    key = lambda t: t[t.sum(1).argsort()]
    torch.testing.assert_close(key(store.batch(0)[HOOK]), key(kept), rtol=1e-4, atol=1e-5)


def test_store_drops_massive_activations_anywhere(tiny_models, corpus):
    model = tiny_models["tiny-llama"]
    from interp.corpus import token_rows

    rows = torch.stack(list(token_rows(model, corpus, 8 * 16, 16)))
    _, cache = model.run_with_cache(rows)
    every = cache[HOOK][:, 1:].reshape(-1, model.cfg.d_model)
    norms = every.norm(dim=-1)
    ratio = float((norms / norms.median()).quantile(0.95))  # low enough that this block has tokens above it
    typical = every[norms <= ratio * norms.median()]
    assert 0 < len(typical) < len(every)
    store = ActivationStore(model, [HOOK], corpus, batch_size=32, seq_len=16, block_rows=8, max_norm_ratio=ratio)
    got = torch.cat([store.batch(i)[HOOK] for i in range(store.batches_per_block)])
    # every batch vector is a typical token, none is above the ratio
    assert len(got) == store.batches_per_block * 32
    assert (got.norm(dim=-1) <= ratio * norms.median() + 1e-4).all()
    assert all(bool((typical - g).abs().amax(1).min() < 1e-5) for g in got)
    with pytest.raises(InterpError, match="raise max_norm_ratio"):
        ActivationStore(model, [HOOK], corpus, batch_size=120, seq_len=16, block_rows=8, max_norm_ratio=1.0).batch(0)


def test_store_disk_cache_skips_the_model(tiny_models, corpus, tmp_path, monkeypatch):
    model = tiny_models["tiny-llama"]
    first = ActivationStore(model, [HOOK], corpus, batch_size=64, seq_len=16, block_rows=8, cache_dir=tmp_path)
    a = first.batch(1)[HOOK]
    assert len(list(tmp_path.rglob("block-*.safetensors"))) == 1
    second = ActivationStore(model, [HOOK], corpus, batch_size=64, seq_len=16, block_rows=8, cache_dir=tmp_path)
    monkeypatch.setattr(second, "_harvest", lambda block: (_ for _ in ()).throw(AssertionError("ran the model")))
    assert torch.equal(second.batch(1)[HOOK], a)


def test_killed_run_resumes_to_identical_weights(tiny_models, corpus, tmp_path, killed_at_step):
    model = tiny_models["tiny-llama"]
    whole = train(model, _cfg(corpus), tmp_path / "whole")
    real = ActivationStore.batch
    killed_at_step(6)
    with pytest.raises(KeyboardInterrupt):
        train(model, _cfg(corpus), tmp_path / "killed")
    killed_at_step(None)
    resumed = train(model, _cfg(corpus), tmp_path / "killed")
    assert resumed.resumed_from == 4
    for name, p in whole.sae.state_dict().items():
        assert torch.equal(p, resumed.sae.state_dict()[name]), name
    lines = [json.loads(l) for l in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [4, 8] and {"l0", "fvu", "dead_frac"} <= set(lines[0])
    loaded = load_sae(tmp_path / "whole")
    x = real(ActivationStore(model, [HOOK], corpus, 256, 32, 32), 0)[HOOK]
    whole.sae.eval()
    torch.testing.assert_close(loaded(x).x_hat, whole.sae(x).x_hat, rtol=1e-4, atol=1e-4)


def test_two_gloo_processes_equal_one(tiny_models, corpus, tmp_path):
    single = train(tiny_models["tiny-llama"], _cfg(corpus), tmp_path / "single")
    proc = run_ddp_worker(tmp_path / "ddp", corpus, port=29533)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = load_sae(tmp_path / "ddp")
    ref = load_sae(tmp_path / "single")
    for name in ("W_enc", "W_dec", "b_enc", "b_dec"):  # equal up to the order of the gradient sums
        a, b = getattr(ddp, name), getattr(ref, name)
        assert (a - b).abs().max() < 1e-4 and (a - b).norm() / b.norm() < 1e-5, name
    assert single.steps == 8


def test_non_finite_loss_stops_and_keeps_the_checkpoint(tiny_models, corpus, tmp_path):
    with pytest.raises(InterpError, match="keeping the last good checkpoint"):
        train(tiny_models["tiny-llama"], _cfg(corpus, architecture="relu", lr=1e30, grad_clip=1e30), tmp_path)


def test_bad_hook_and_short_corpus(tiny_models, corpus, tmp_path):
    with pytest.raises(InterpError, match="has no hook"):
        train(tiny_models["tiny-llama"], _cfg(corpus, hook="blocks.9.hook_resid_post"), tmp_path / "a")
    short = tmp_path / "short.txt"
    short.write_text("only a few words here")
    with pytest.raises(InterpError, match="ran out"):
        train(tiny_models["tiny-llama"], _cfg(str(short)), tmp_path / "b")


def _identity_sae(d):
    """A ReLU SAE with x̂ = ReLU(x) − ReLU(−x) = x exactly: W_enc = [I, −I], W_dec = [I; −I]."""
    from saes import SAEConfig, make_sae

    sae = make_sae(SAEConfig("relu", d, 2 * d, hook_name=HOOK))
    eye = torch.eye(d)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


@pytest.mark.parametrize("name", TINY)
def test_evaluation_on_hand_set_saes(tiny_models, corpus, name):
    from saes.evaluate import evaluate_sae

    model = tiny_models[name]
    perfect = evaluate_sae(model, _identity_sae(model.cfg.d_model), corpus, tokens=512, seq_len=32, skip_rows=0)
    assert perfect.fvu == pytest.approx(0.0, abs=1e-6) and perfect.kl_sae == pytest.approx(0.0, abs=1e-5)
    per_row = 32 if model.cfg.default_prepend_bos else 31  # the sink position of a BOS-less model is skipped
    assert perfect.ce_loss_recovered == pytest.approx(1.0, abs=1e-4) and perfect.tokens == 16 * per_row
    assert perfect.l0 == pytest.approx(model.cfg.d_model, rel=0.01)  # one of each ± pair fires per dimension
    assert perfect.skipped_massive == 0
    strict = evaluate_sae(model, _identity_sae(model.cfg.d_model), corpus, tokens=512, seq_len=32, skip_rows=0,
                          max_norm_ratio=1.0)  # about half the tokens count as "massive" and keep their activation
    assert 0 < strict.skipped_massive < strict.tokens + strict.skipped_massive == 16 * per_row
    assert strict.ce_loss_recovered == pytest.approx(1.0, abs=1e-4) and strict.fvu == pytest.approx(0.0, abs=1e-6)
    blank = _identity_sae(model.cfg.d_model)
    with torch.no_grad():
        blank.W_dec.zero_()  # x̂ = b_dec = 0: the same as zero ablation
    zero = evaluate_sae(model, blank, corpus, tokens=512, seq_len=32, skip_rows=0)
    assert zero.ce_loss_recovered == pytest.approx(0.0, abs=1e-4) and zero.ce_sae == pytest.approx(zero.ce_zero)
    assert zero.ce_clean == pytest.approx(perfect.ce_clean) and zero.fvu > 0.9


def test_reconstruction_metrics_match_the_textbook_formulas():
    from saes import SAEConfig, make_sae
    from saes.evaluate import reconstruction_metrics

    torch.manual_seed(0)
    x = 2.0 * torch.randn(300, 8) + 0.5
    assert reconstruction_metrics(_identity_sae(8), x)["fvu"] == pytest.approx(0.0, abs=1e-10)
    sae = make_sae(SAEConfig("topk", 8, 24, hook_name=HOOK, k=3))
    got = reconstruction_metrics(sae, x, batch=64)  # several batches
    f = sae.encode(x)
    x_hat = sae.decode(f)
    fvu = ((x - x_hat) ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert got["fvu"] == pytest.approx(fvu.item(), rel=1e-5) and got["l0"] == pytest.approx(3.0)
    assert got["dead_frac"] == pytest.approx(((f > 0).sum(0) == 0).float().mean().item())


def test_batchtopk_saved_threshold_gives_about_k(tiny_models, corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    cfg = _cfg(corpus, architecture="batchtopk")
    train(model, cfg, tmp_path / "b")
    saved = load_sae(tmp_path / "b")  # the JumpReLU inference form
    store = ActivationStore(model, [HOOK], corpus, cfg.batch_size, cfg.seq_len, cfg.block_rows)
    x = torch.cat([store.batch(i)[HOOK] for i in range(cfg.steps - 8, cfg.steps)])
    assert type(saved).__name__ == "JumpReLUSAE"
    assert (saved.encode(x) > 0).float().sum(-1).mean().item() == pytest.approx(cfg.k, rel=0.02)


def test_metrics_lines_carry_time_and_tokens_per_second(tiny_models, corpus, tmp_path):
    train(tiny_models["tiny-llama"], _cfg(corpus), tmp_path / "run")
    lines = [json.loads(l) for l in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(l["tokens_per_s"] > 0 and l["elapsed_s"] >= 0 and l["time"] > 1.7e9 for l in lines)
    assert [l["elapsed_s"] for l in lines] == sorted(l["elapsed_s"] for l in lines)


def test_eval_holds_out_the_training_rows(tiny_models, corpus, tmp_path):
    """The SAE records how far into its corpus it trained; `sae eval` starts past that by default and
    refuses rows that overlap it. Another corpus has no overlap to avoid."""
    from saes.evaluate import held_out_start

    model = tiny_models["tiny-llama"]
    cfg = _cfg(corpus, tokens=256 * 10)  # 10 batches of 256; a block is 32 rows x 31 tokens = 3 batches -> 4 blocks
    res = train(model, cfg, tmp_path / "run")
    sae = load_sae(tmp_path / "run")
    assert sae.cfg.train_tokens_end == 4 * 32 * 32 and sae.cfg.train_corpus
    assert held_out_start(sae, corpus, seq_len=32) == 128
    assert held_out_start(sae, corpus, seq_len=128) == 32
    assert held_out_start(sae, corpus, seq_len=32, skip_rows=200) == 200
    with pytest.raises(InterpError, match="rows 50-127 of this corpus are the SAE's training data"):
        held_out_start(sae, corpus, seq_len=32, skip_rows=50)
    assert held_out_start(sae, None, seq_len=32) == 0  # trained on another corpus
    assert res.steps == 10


def test_a_failed_run_leaves_no_empty_out_directory(tiny_models, corpus, tmp_path):
    with pytest.raises(InterpError, match="has no hook"):
        train(tiny_models["tiny-llama"], _cfg(corpus, hook="blocks.9.hook_resid_post"), tmp_path / "new")
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made is left alone
    with pytest.raises(InterpError):
        train(tiny_models["tiny-llama"], _cfg(corpus, hook="blocks.9.hook_resid_post"), tmp_path / "mine")
    assert (tmp_path / "mine").is_dir()


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    """Eight BBC articles: a few blocks of 8 rows x 16 tokens, so a run passes over it several times."""
    from interp.corpus import documents

    path = tmp_path_factory.mktemp("small") / "few.txt"
    path.write_text("\n\n".join(d.replace("\n\n", "\n") for _, d in zip(range(8), documents("bbc-news"))))
    return str(path)


def test_epochs_revisit_every_block_reshuffled(tiny_models, small_corpus):
    model = tiny_models["tiny-llama"]
    kw = dict(batch_size=8 * 15, seq_len=16, block_rows=8)  # one batch per block
    one = ActivationStore(model, [HOOK], small_corpus, **kw)
    per = one.blocks_per_epoch()
    assert per >= 2
    # the count agrees with reading the corpus: the last whole block is there, the next one is not
    one.block(per - 1)
    with pytest.raises(InterpError, match="ran out.*--epochs"):
        ActivationStore(model, [HOOK], small_corpus, **kw).block(per)
    three = ActivationStore(model, [HOOK], small_corpus, epochs=3, **kw)
    sources = [three.epoch_of(b) for b in range(3 * per)]
    for epoch in range(3):
        assert sorted(j for e, j in sources if e == epoch) == list(range(per))  # every block once per epoch
    assert [j for e, j in sources if e == 1] != [j for e, j in sources if e == 2]  # in a new order
    e, j = sources[per]
    again, first = three.batch(per)[HOOK], one.batch(j)[HOOK]
    assert not torch.equal(again, first)  # reshuffled ...
    key = lambda a: a[a[:, 0].argsort()]  # ... but the same tokens  # noqa: E731
    torch.testing.assert_close(key(again), key(first))
    with pytest.raises(InterpError, match="3 epoch"):
        three.batch(3 * per)


def test_a_run_longer_than_the_corpus_needs_epochs(tiny_models, small_corpus, tmp_path):
    model = tiny_models["tiny-llama"]
    cfg = dict(tokens=30 * 120, batch_size=120, seq_len=16, block_rows=8, corpus=small_corpus, log_every=10)
    with pytest.raises(InterpError, match="ran out|epoch"):
        train(model, _cfg(**cfg), tmp_path / "short")
    res = train(model, _cfg(**cfg, epochs=30), tmp_path / "long")
    lines = [json.loads(l) for l in (tmp_path / "long" / "metrics.jsonl").read_text().splitlines()]
    assert res.steps == 30 and lines[-1]["epoch"] > 1 and [l["epoch"] for l in lines] == sorted(l["epoch"] for l in lines)


def test_default_learning_rate_falls_with_the_root_of_the_width(tiny_models, corpus, tmp_path):
    """lr 0 is Gao et al.'s 2e-4 · sqrt(2^14 / d_sae): the optimiser runs at it (its warm-up and decay
    factors applied) and train_config.json records it."""
    from saes.train import _lr_factor, default_lr

    assert default_lr(2**14) == pytest.approx(2e-4) and default_lr(4 * 2**14) == pytest.approx(1e-4)
    cfg = _cfg(corpus, lr=0.0, d_sae=256)
    train(tiny_models["tiny-llama"], cfg, tmp_path)
    want = 2e-4 * (16384 / 256) ** 0.5
    assert json.loads((tmp_path / "train_config.json").read_text())["lr"] == pytest.approx(want)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["lr"] == pytest.approx(want * _lr_factor(first["step"], cfg))


def test_init_seed_changes_the_weights_and_not_the_tokens(tiny_models, corpus, tmp_path, monkeypatch):
    """--init-seed reseeds only the initial weights: the batches are the ones --seed alone gives,
    init_seed == seed reproduces the default run, and checkpoints without the field still resume."""
    from saes.train_checkpoint import comparable

    model = tiny_models["tiny-llama"]
    real, seen = ActivationStore.batch, []

    def record(self, i):
        out = real(self, i)
        seen.append(out[HOOK].sum().item())
        return out

    monkeypatch.setattr(ActivationStore, "batch", record)
    runs = {}
    for name, kw in [("default", {}), ("same", {"init_seed": 0}), ("other", {"init_seed": 1}),
                     ("data", {"seed": 1})]:
        seen.clear()
        res = train(model, _cfg(corpus, tokens=256 * 4, **kw), tmp_path / name)
        runs[name] = (res.sae.state_dict(), list(seen))
    default, same, other, data = (runs[k] for k in ("default", "same", "other", "data"))
    assert all(torch.equal(default[0][k], same[0][k]) for k in default[0])
    assert not torch.equal(default[0]["W_enc"], other[0]["W_enc"])
    assert other[1] == default[1] and data[1] != default[1]
    assert "init_seed" not in comparable(_cfg(corpus)) and comparable(_cfg(corpus, init_seed=3))["init_seed"] == 3
    assert json.loads((tmp_path / "other" / "train_config.json").read_text())["init_seed"] == 1
