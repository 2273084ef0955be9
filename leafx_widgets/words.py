"""Token pieces -> bytes -> words, for the two subword schemes speech decoders use.

* byte-level BPE (GPT-2, Whisper): every byte is stored as a printable character
  (GPT-2's byte-to-unicode table), so a leading space is ``Ġ``;
* SentencePiece (Llama, T5, many speech LLMs): a leading space is ``▁`` (U+2581), and
  bytes outside the vocabulary are ``<0xNN>`` pieces (byte fallback).

Both decode to the UTF-8 bytes the token adds to the text, a word start being a
leading space; ``group_words`` then works the same for every model.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Callable, Sequence

SENTENCEPIECE_SPACE = "\u2581"  # '▁'
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-unicode table, inverted: BPE token characters -> raw bytes."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def byte_bpe_bytes(piece: str) -> bytes:
    """A byte-level BPE piece (``"Ġhello"``) -> its bytes (``b" hello"``); unknown characters drop."""
    table = _byte_decoder()
    return bytes(table[c] for c in piece if c in table)


def sentencepiece_bytes(piece: str) -> bytes:
    """A SentencePiece piece (``"▁hello"``, ``"<0xE2>"``) -> its bytes (``b" hello"``, ``b"\\xe2"``)."""
    fallback = _BYTE_FALLBACK.fullmatch(piece)
    if fallback:
        return bytes([int(fallback.group(1), 16)])
    return piece.replace(SENTENCEPIECE_SPACE, " ").encode("utf-8")


PIECE_DECODERS: dict[str, Callable[[str], bytes]] = {
    "byte_bpe": byte_bpe_bytes,
    "sentencepiece": sentencepiece_bytes,
}


def piece_decoder(scheme: str) -> Callable[[str], bytes]:
    if scheme not in PIECE_DECODERS:
        raise ValueError(f"unknown token scheme {scheme!r}; known: {', '.join(PIECE_DECODERS)}")
    return PIECE_DECODERS[scheme]


def is_punctuation(raw: bytes) -> bool:
    """A piece with visible characters, none of them a letter or digit (",", "...", " -")."""
    text = raw.decode("utf-8", errors="ignore").strip()
    return bool(text) and all(not c.isalnum() for c in text)


def group_words(pieces: Sequence[bytes]) -> list[list[int]]:
    """Indices of ``pieces`` (one window's text tokens, as bytes) grouped into words.

    A word starts at a piece that begins with a space; punctuation-only pieces join the
    word before (so "Mr." and "cold-hearted," stay one word)."""
    words: list[list[int]] = []
    for i, raw in enumerate(pieces):
        if not words or (raw.startswith(b" ") and not is_punctuation(raw)):
            words.append([])
        words[-1].append(i)
    return words


def join_text(pieces: Sequence[bytes]) -> str:
    """The text of consecutive pieces: bytes joined before decoding (a character may span pieces)."""
    return b"".join(pieces).decode("utf-8", errors="replace").strip()
