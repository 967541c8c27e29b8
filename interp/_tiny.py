"""Seeded random GPT-2 and Llama models for unit tests and demos (built in ~0.1 s).

They share the embedded model's tokenizer, so every prompt used on the real model
also runs on them. Weights are seeded without touching the global RNG.
"""

from __future__ import annotations

import torch

_SEED = 0


def build_tiny(name: str, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    vocab = len(tokenizer)
    if name == "tiny-gpt2":
        config = GPT2Config(n_layer=3, n_head=4, n_embd=64, n_positions=512, vocab_size=vocab,
                            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            architectures=["GPT2LMHeadModel"])
        cls = GPT2LMHeadModel
    elif name == "tiny-llama":
        config = LlamaConfig(num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                             hidden_size=64, intermediate_size=160, vocab_size=vocab,
                             max_position_embeddings=512, tie_word_embeddings=False,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                             architectures=["LlamaForCausalLM"])
        cls = LlamaForCausalLM
    else:
        raise KeyError(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = cls(config)
        # Larger-than-default random weights so attention is not uniform and the
        # residual stream is not dominated by the embedding: tests then exercise
        # non-trivial patterns and norm scales.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if p.dim() == 2 and "emb" not in pname and "wte" not in pname and "wpe" not in pname:
                    p.normal_(0.0, 0.08)
    return model.eval(), tokenizer
