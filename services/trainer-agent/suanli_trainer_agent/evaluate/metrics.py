"""Scores of generated text against references: corpus BLEU (sacrebleu), normalised exact match,
and accuracy on multiple-choice rows (the output names the right choice by letter or by text)."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

import sacrebleu

# "B", "b.", "(B)", "B) Paris", "Answer: B" — a choice's letter leading the (normalised) output.
_LETTER = re.compile(r"^(?:(?:the )?answer(?: is)?\s*:?\s*)?\(?([a-z])\)?(?=$|[\s.):,])")


@dataclass(frozen=True, slots=True)
class MultipleChoice:
    choices: tuple[str, ...]
    answer: int  # index of the right choice


def normalise(text: str) -> str:
    """Stripped, whitespace collapsed, case folded: what exact match compares."""
    return " ".join(text.split()).casefold()


def exact_match(outputs: Sequence[str], references: Sequence[str]) -> float:
    """The share of outputs equal to their reference after `normalise` (0.0 for none)."""
    if not outputs:
        return 0.0
    return sum(normalise(o) == normalise(r) for o, r in zip(outputs, references, strict=True)) / len(outputs)


def bleu(outputs: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100, sacrebleu's default 13a tokenisation), one reference per output."""
    if not outputs:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(outputs), [list(references)]).score)


def letter(index: int) -> str:
    return string.ascii_uppercase[index]


def answer_index(answer: object, choices: Sequence[str]) -> int:
    """A row's `answer` as a choice index: an index, a letter ("B"), or the right choice's text."""
    if isinstance(answer, bool) or not isinstance(answer, int | str):
        raise ValueError("'answer' must be a choice index, a letter or the text of a choice")
    if isinstance(answer, int):
        if 0 <= answer < len(choices):
            return answer
        raise ValueError(f"'answer' {answer} is not an index of the {len(choices)} choices")
    said = answer.strip()
    if len(said) == 1 and said.isalpha() and said.upper() in string.ascii_uppercase[: len(choices)]:
        return string.ascii_uppercase.index(said.upper())
    texts = [normalise(c) for c in choices]
    if normalise(said) in texts:
        return texts.index(normalise(said))
    raise ValueError(f"'answer' {answer!r} is neither a letter, an index nor one of the choices")


def chosen_index(output: str, choices: Sequence[str]) -> int | None:
    """The choice an output names: its text (case-insensitive, after stripping) first, since a text
    may start like a letter ("A cat"), else a leading letter; None when it names none."""
    said = normalise(output)
    texts = [normalise(c) for c in choices]
    for candidate in (said, said.rstrip(".")):
        if candidate in texts:
            return texts.index(candidate)
    found = _LETTER.match(said)
    if found is not None:
        index = ord(found.group(1)) - ord("a")
        if index < len(choices):
            return index
    return None


def accuracy(outputs: Sequence[str], questions: Sequence[MultipleChoice | None]) -> float | None:
    """The share of multiple-choice rows answered right; None when no row is multiple choice."""
    asked = [(o, q) for o, q in zip(outputs, questions, strict=True) if q is not None]
    if not asked:
        return None
    return sum(chosen_index(o, q.choices) == q.answer for o, q in asked) / len(asked)
