"""Seeded random GPT-2, Llama and Gemma 3 models for unit tests and demos (built in ~0.1 s).

They share the embedded model's tokenizer, so every prompt used on the real model
also runs on them. Weights are seeded without touching the global RNG.
"""

from __future__ import annotations

import torch

_SEED = 0


def build_tiny(name: str, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from interp.architectures import BUILTIN

    # The shape is the built-in table's (interp.architectures), the one place that states it.
    shape = {k: v for k, v in BUILTIN[name].config.items() if k != "model_type"}
    common = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
              "eos_token_id": tokenizer.eos_token_id}
    if name == "tiny-gpt2":
        config = GPT2Config(**shape, **common, architectures=["GPT2LMHeadModel"])
        cls = GPT2LMHeadModel
    elif name == "tiny-llama":
        config = LlamaConfig(**shape, **common, architectures=["LlamaForCausalLM"])
        cls = LlamaForCausalLM
    elif name == "tiny-gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        config = Gemma3TextConfig(**shape, **common, pad_token_id=tokenizer.eos_token_id,
                                  architectures=["Gemma3ForCausalLM"])
        cls = Gemma3ForCausalLM
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
                elif p.dim() == 1 and "norm" in pname and name == "tiny-gemma3":
                    p.normal_(0.0, 0.3)  # Gemma's norms scale by (1 + w): exercise w, which starts at 0
    return model.eval(), tokenizer
