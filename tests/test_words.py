"""Word grouping for both subword schemes, on hand-made pieces (no model needed)."""
import pytest

from leafx_widgets.words import byte_bpe_bytes, group_words, join_text, piece_decoder, sentencepiece_bytes


def words_of(pieces, decode):
    raw = [decode(p) for p in pieces]
    return [join_text([raw[i] for i in w]) for w in group_words(raw)], group_words(raw)


def test_byte_level_bpe_words():
    # GPT-2 / Whisper spelling: "Ġ" is a leading space, "Ċ" a newline; "âĢĻ" is the 3 bytes of "’"
    pieces = ["And", "ĠMr", ".", "ĠDash", "wood", "Ġcold", "-", "heart", "ed", ",",
              "Ġdon", "âĢĻ", "t", "Ġ..."]
    texts, groups = words_of(pieces, byte_bpe_bytes)
    assert texts == ["And", "Mr.", "Dashwood", "cold-hearted,", "don’t ..."]
    assert groups[0] == [0] and groups[2] == [3, 4] and groups[-1] == [10, 11, 12, 13]


def test_sentencepiece_words():
    # "▁" is a leading space; "<0xE2><0x80><0x99>" is "’" by byte fallback, split over three pieces
    pieces = ["▁And", "▁Mr", ".", "▁Dash", "wood", "▁cold", "-", "heart", "ed", ",", "▁don", "<0xE2>", "<0x80>",
              "<0x99>", "t", "▁..."]
    texts, groups = words_of(pieces, sentencepiece_bytes)
    assert texts == ["And", "Mr.", "Dashwood", "cold-hearted,", "don’t ..."]
    assert groups[0] == [0] and groups[3] == [5, 6, 7, 8, 9]


def test_the_two_schemes_spell_the_same_bytes():
    assert byte_bpe_bytes("Ġhello") == sentencepiece_bytes("▁hello") == b" hello"
    assert byte_bpe_bytes("âĢĻ") == b"".join(sentencepiece_bytes(f"<0x{b:02X}>") for b in "’".encode())


def test_a_word_start_that_is_punctuation_joins_the_word_before():
    texts, _ = words_of(["Ġwait", "Ġ-", "Ġthen"], byte_bpe_bytes)
    assert texts == ["wait -", "then"]


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown token scheme 'wordpiece'; known: byte_bpe, sentencepiece"):
        piece_decoder("wordpiece")
