import json

import pytest
import torch

from interp import InterpError, load_model, single_token, str_tokens, to_tokens
from interp.models import list_models
from tests.conftest import EIFFEL


def test_tiny_architectures_are_what_they_claim(tiny_models):
    gpt2, llama = tiny_models["tiny-gpt2"], tiny_models["tiny-llama"]
    assert gpt2.cfg.normalization_type == "LN" and gpt2.cfg.positional_embedding_type == "standard"
    assert llama.cfg.normalization_type == "RMS" and llama.cfg.positional_embedding_type == "rotary"
    assert llama.cfg.n_key_value_heads == 2 and llama.cfg.n_heads == 4  # GQA


def test_tiny_models_are_seeded():
    a, b = load_model("tiny-llama", device="cpu"), load_model("tiny-llama", device="cpu")
    tokens = torch.tensor([[10, 20, 30]])
    with torch.no_grad():
        assert torch.equal(a(tokens), b(tokens))


def test_bos_conventions(tiny_models):
    gpt2, llama = tiny_models["tiny-gpt2"], tiny_models["tiny-llama"]
    assert to_tokens(gpt2, "hello world")[0, 0] == gpt2.tokenizer.bos_token_id
    assert str_tokens(llama, to_tokens(llama, "hello world")[0]) == ["hello", " world"]
    assert str_tokens(llama, "hello world") == ["hello", " world"]  # a text is tokenized first


def test_single_token(tiny):
    assert tiny.tokenizer.decode([single_token(tiny, " Paris")]) == " Paris"
    with pytest.raises(InterpError, match=r"' San Francisco' is 2 tokens \[' San', ' Francisco'\]"):
        single_token(tiny, " San Francisco")
    with pytest.raises(InterpError, match="empty answer"):
        single_token(tiny, "")


def test_prompts_of_different_lengths_are_refused(tiny):
    with pytest.raises(InterpError, match="different lengths"):
        to_tokens(tiny, ["The cat", "The big cat sat"])


def test_empty_prompt_is_refused(tiny):
    with pytest.raises(InterpError, match="empty prompt"):
        to_tokens(tiny, "   ")


def test_unknown_model_names_the_default(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InterpError) as err:
        load_model("no-such-org/no-such-model")
    msg = str(err.value)
    assert "unknown model 'no-such-org/no-such-model'" in msg and "smollm2-135m" in msg
    assert "\n" not in msg


def test_model_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(InterpError, match="has no weights"):
        load_model(str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(InterpError, match="only pickle weights"):
        load_model(str(tmp_path))


def test_local_directory_loads_through_boot_transformers(tmp_path, tiny_models):
    """The Hugging Face path (boot_transformers) on a directory a user saved."""
    from interp._tiny import build_tiny
    from interp.models import load_embedded_tokenizer

    hf_model, tok = build_tiny("tiny-gpt2", load_embedded_tokenizer())
    hf_model.save_pretrained(tmp_path)  # safetensors
    tok.save_pretrained(tmp_path)
    bridge = load_model(str(tmp_path), device="cpu")
    tokens = torch.tensor([[1, 500, 600, 700]])
    with torch.no_grad():
        expected = tiny_models["tiny-gpt2"](tokens)
        assert torch.allclose(bridge(tokens), expected, atol=1e-5)


def test_list_models_reports_offline_status():
    rows = {r["name"]: r for r in list_models()}
    assert rows["smollm2-135m"]["offline"] is True
    assert rows["tiny-gpt2"]["offline"] and rows["tiny-llama"]["offline"]
    assert rows["gpt2"]["kind"] == "huggingface"


@pytest.mark.slow
def test_embedded_model_knows_paris(smol):
    assert smol.cfg.n_layers == 30 and smol.cfg.d_model == 576 and smol.cfg.n_heads == 9
    tokens = to_tokens(smol, EIFFEL)
    with torch.no_grad():
        probs = smol(tokens)[0, -1].softmax(-1)
    assert probs.argmax() == single_token(smol, " Paris")
    assert 0.6 < probs[single_token(smol, " Paris")] < 0.8


@pytest.mark.slow
def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch, smol):
    from interp.cache import cache_dir
    from interp.embedded import _embedded_dir

    source = _embedded_dir()
    monkeypatch.setenv("INTERP_CACHE", str(tmp_path))
    target = cache_dir("models") / "smollm2-135m"
    target.mkdir(parents=True)
    for f in source.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    weights = target / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])  # truncated
    model = load_model("smollm2-135m", device="cpu")  # rebuilt, not a crash
    tokens = to_tokens(smol, EIFFEL)
    with torch.no_grad():
        assert torch.allclose(model(tokens), smol(tokens), atol=1e-5)
    assert weights.stat().st_size == (source / "model.safetensors").stat().st_size


def test_a_device_map_dispatches_the_model_and_keeps_its_values():
    """The accelerate path of ``device_map`` on the CPU alone (the CUDA split is in test_cuda.py)."""
    plain = load_model("tiny-llama", device="cpu")
    layers = {f"model.layers.{i}": "cpu" for i in range(plain.cfg.n_layers)}
    mapped = load_model("tiny-llama", device_map={"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", **layers,
                                                  "model.norm": "cpu", "lm_head": "cpu"})
    assert getattr(mapped.original_model, "hf_device_map", None) and mapped.cfg.device == "cpu"
    tokens = torch.tensor([[5, 6, 7, 8, 9]])
    _, a = plain.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    _, b = mapped.run_with_cache(tokens, names_filter="blocks.1.hook_resid_post")
    torch.testing.assert_close(a["blocks.1.hook_resid_post"], b["blocks.1.hook_resid_post"])
    for bad, message in [({"model.nope": "cpu"}, "not a module of this model"), ("balanced-ish", "give 'auto'")]:
        with pytest.raises(InterpError, match=message):
            load_model("tiny-llama", device_map=bad)
    with pytest.raises(InterpError, match="not both"):
        load_model("tiny-llama", device="cpu", device_map="auto")


def test_embedded_cache_key_is_content_not_mtime(tmp_path):
    """Two installs of the same wheel (two checkouts' environments) share the dequantized cache; it used to
    be keyed by the GGUF's mtime, so they rebuilt it (about 40 s) in turn."""
    import os

    from interp.embedded import _manifest

    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    data = os.urandom(3 << 20)
    a.write_bytes(data)
    b.write_bytes(data)
    os.utime(b, (1_000_000, 1_000_000))
    assert _manifest(a) == _manifest(b)
    b.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    assert _manifest(a) != _manifest(b)


def test_a_bridge_that_leaves_the_kv_cache_empty_is_refused(tiny, monkeypatch):
    """The installed transformers fills the cache through the bridge; when it does not (as
    transformers 5.24 with TransformerLens 4.3), loading says so instead of every cached
    analysis going silently wrong."""
    from transformers import DynamicCache

    from interp.models import check_kv_cache

    check_kv_cache(tiny)  # the installed pair works
    hf = tiny.original_model
    forward = hf.forward

    def unfilled(*args, **kwargs):
        out = forward(*args, **{**kwargs, "use_cache": False})
        out.past_key_values = DynamicCache()
        return out

    monkeypatch.setattr(hf, "forward", unfilled)
    with pytest.raises(InterpError, match=r"does not fill the key/value cache.*transformers>=5\.9,<5\.24"):
        check_kv_cache(tiny)
