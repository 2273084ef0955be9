"""Word alignment of a decoded transcript to a reference, and WER.

Words are folded (lower case, punctuation removed, a few spoken forms of
abbreviations expanded, numerals spelled out: Whisper writes "10 meters" where a
reference says "ten meters") and aligned by Levenshtein distance with a backtrace.
Only exact matches after folding inherit the reference word's time span;
substitutions, insertions and deletions count towards WER and get no span.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

SPOKEN_FORMS = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "&": "and"}
_PUNCT = re.compile(r"[^\w\s']")


def fold(word: str) -> str:
    """Lower case, strip accents and punctuation (keeps inner apostrophes)."""
    w = unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode().lower()
    w = _PUNCT.sub("", w).strip("'")
    return SPOKEN_FORMS.get(w, w)


_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
         "fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
             "nine": "ninth", "twelve": "twelfth"}
_NUMERAL = re.compile(r"(\d+)(st|nd|rd|th)?")


def number_words(n: int) -> list[str]:
    """Cardinal ``n`` (0 <= n < 10**12) spelled out: 2025 -> two thousand twenty five."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + (number_words(n % 10) if n % 10 else [])
    for value, name in _SCALES:
        if n >= value:
            rest = number_words(n % value) if n % value else []
            return number_words(n // value) + [name] + rest
    raise AssertionError("unreachable")


def spell_numeral(word: str) -> list[str]:
    """A folded word that is a numeral ("10", "1000", "21st") as spoken words, else ``[word]``."""
    m = _NUMERAL.fullmatch(word)
    if not m or len(m.group(1)) > 12:
        return [word]
    words = number_words(int(m.group(1)))
    if m.group(2):  # ordinal: change the last word only (twenty first, one hundredth)
        last = words[-1]
        words[-1] = _ORDINALS.get(last) or (last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return words


def fold_words(text_or_words) -> list[str]:
    """Folded word list from a string or a list of words (hyphens split words, numerals are
    spelled out)."""
    words = text_or_words.split() if isinstance(text_or_words, str) else list(text_or_words)
    out: list[str] = []
    for w in words:
        for piece in w.replace("-", " ").split():
            f = fold(piece)
            if f:
                out.extend(spell_numeral(f))
    return out


@dataclass
class AlignOp:
    op: str            # "match", "sub", "ins" (extra hypothesis word), "del" (missed reference word)
    hyp: int | None    # index into the hypothesis words
    ref: int | None    # index into the reference words


@dataclass
class Alignment:
    ops: list[AlignOp]
    n_ref: int
    n_sub: int
    n_ins: int
    n_del: int

    @property
    def wer(self) -> float:
        return (self.n_sub + self.n_ins + self.n_del) / max(self.n_ref, 1)

    def matches(self) -> dict[int, int]:
        """hypothesis word index -> reference word index, exact matches only."""
        return {o.hyp: o.ref for o in self.ops if o.op == "match"}


def align_words(hyp: list[str], ref: list[str]) -> Alignment:
    """Levenshtein alignment of already-folded word lists (ties prefer match/sub)."""
    n, m = len(hyp), len(ref)
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        cost[i][0] = i
    for j in range(1, m + 1):
        cost[0][j] = j
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            diag = cost[i - 1][j - 1] + (hyp[i - 1] != ref[j - 1])
            cost[i][j] = min(diag, cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    ops: list[AlignOp] = []
    i, j = n, m
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (hyp[i - 1] != ref[j - 1]):
            ops.append(AlignOp("match" if hyp[i - 1] == ref[j - 1] else "sub", i - 1, j - 1))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            ops.append(AlignOp("ins", i - 1, None))
            i -= 1
        else:
            ops.append(AlignOp("del", None, j - 1))
            j -= 1
    ops.reverse()
    count = lambda k: sum(o.op == k for o in ops)  # noqa: E731
    return Alignment(ops, m, count("sub"), count("ins"), count("del"))


def wer(hyp_text: str, ref_text: str) -> float:
    """Word error rate after folding."""
    return align_words(fold_words(hyp_text), fold_words(ref_text)).wer
