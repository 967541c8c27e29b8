"""Tokenization with each model's BOS convention, and single-token answers.

The convention lives on ``model.cfg.default_prepend_bos`` (set by
:func:`interp.models.load_model`: SmolLM2 was trained without BOS, GPT-2-style
models conventionally get one), so every analysis tokenizes the same way.
"""

from __future__ import annotations

import re

import torch
from jaxtyping import Int
from torch import Tensor

from interp.errors import InterpError

__all__ = ["display_token", "joined_text", "right_pad", "single_token", "str_tokens", "to_tokens"]


def to_tokens(model, prompts: str | list[str], prepend_bos: bool | None = None
              ) -> Int[Tensor, "batch pos"]:
    """Token ids of one prompt or several of equal token length, on the model's device."""
    batch = [prompts] if isinstance(prompts, str) else list(prompts)
    if not batch or any(not isinstance(p, str) or not p.strip() for p in batch):
        raise InterpError("empty prompt: give some text to analyse")
    bos = model.cfg.default_prepend_bos if prepend_bos is None else prepend_bos
    rows = [model.to_tokens(p, prepend_bos=bos)[0] for p in batch]
    lengths = {len(r) for r in rows}
    if len(lengths) > 1:
        shown = "; ".join(f"{p!r} -> {len(r)} tokens" for p, r in zip(batch, rows))
        raise InterpError(f"prompts tokenize to different lengths: {shown}")
    return torch.stack(rows).to(model.cfg.device)


def right_pad(model, rows: list[list[int]]) -> Int[Tensor, "batch pos"]:
    """Token rows of different lengths as one batch, padded on the right with EOS. Causal
    attention never lets a real token see the padding after it, so no mask is needed as long
    as only real positions are read."""
    pad = model.tokenizer.eos_token_id or 0
    width = max(map(len, rows))
    return torch.tensor([list(r) + [pad] * (width - len(r)) for r in rows], device=model.cfg.device)


def str_tokens(model, tokens: Int[Tensor, " pos"] | str) -> list[str]:
    """The string of each token id (not joined), e.g. ``[' E', 'iffel', ' Tower']``; a text is
    tokenized first, as the model reads it (:func:`to_tokens`). A byte-level token that is only
    part of a character (CJK, emoji) shows its bytes, ``' \\xe6'``, rather than the ``'�'`` that
    decoding it alone gives, so figure axes and JSON stay readable."""
    if isinstance(tokens, str):
        tokens = to_tokens(model, tokens)[0]
    return [display_token(model.tokenizer, int(t)) for t in tokens]


def display_token(tokenizer, token_id: int) -> str:
    """``tokenizer.decode([token_id])``, or, where that is a replacement character, the token's raw
    bytes with the undecodable ones escaped."""
    text = tokenizer.decode([token_id])
    if "\ufffd" not in text:
        return text
    piece = tokenizer.convert_ids_to_tokens(token_id)
    decoder = _byte_decoder()
    if not isinstance(piece, str) or any(c not in decoder for c in piece):
        return text  # not a byte-level BPE piece: keep the decoded text
    return bytes(decoder[c] for c in piece).decode("utf-8", errors="backslashreplace")


_BYTES: dict[str, int] = {}


def _byte_decoder() -> dict[str, int]:
    """Byte-level BPE's character for each byte (GPT-2, Llama-3, SmolLM2): printable Latin-1 bytes
    stand for themselves, the other 68 bytes for the characters from U+0100 on, in byte order."""
    if not _BYTES:
        printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
        shifted = 0
        for b in range(256):
            if b in printable:
                _BYTES[chr(b)] = b
            else:
                _BYTES[chr(256 + shifted)] = b
                shifted += 1
    return _BYTES


def single_token(model, text: str, what: str = "answer") -> int:
    """The id of ``text`` if it is exactly one token, else an error naming its pieces."""
    if not text:
        raise InterpError(f"empty {what}: give a single token such as ' Paris'")
    ids = model.tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        pieces = [model.tokenizer.decode([i]) for i in ids]
        raise InterpError(f"{what} {text!r} is {len(ids)} tokens {pieces}, not one; "
                          f"use a single token such as {pieces[0]!r}")
    return ids[0]


_ESCAPED_BYTE = re.compile(r"\\x([0-9a-f]{2})")


def joined_text(tokens: list[str]) -> list[str]:
    """For each display token (:func:`display_token`), the text of the character it is part of: a
    run of byte tokens that only together make a character (an emoji, a CJK character, ``' \\xe6'``
    then ``'\\x97\\xa5'``) shows that character on every token of the run, where the run decodes.
    Other tokens are returned unchanged."""
    out = list(tokens)
    i = 0
    while i < len(tokens):
        if not _ESCAPED_BYTE.search(tokens[i]):
            i += 1
            continue
        j, raw = i, b""
        while j < len(tokens) and (j == i or _ESCAPED_BYTE.search(tokens[j])):
            raw += _token_bytes(tokens[j])
            j += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            out[i:j] = [text] * (j - i)
            break
        i = j
    return out


def _token_bytes(display: str) -> bytes:
    parts = _ESCAPED_BYTE.split(display)  # text, hex, text, hex, ..., text
    return b"".join(bytes([int(p, 16)]) if k % 2 else p.encode("utf-8") for k, p in enumerate(parts))
