"""BM25 as sparse vectors, for the keyword half of hybrid retrieval.

A chunk's vector holds the BM25 term-frequency part of each of its terms; Qdrant multiplies in
the inverse document frequency itself (the collection's sparse vector has the IDF modifier), so
nothing here has to know the corpus. A question's vector is 1 per distinct term. Terms are
lower-cased Latin words and, for Chinese (written without spaces), single characters and
character pairs; a term's index is its 32-bit murmur hash.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import mmh3

_LATIN = re.compile(r"[a-z0-9]+(?:['_.-][a-z0-9]+)*")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# Words that match nearly every chunk: kept, they would make any question "find" something.
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "me",
        "my",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "shall",
        "should",
        "so",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "about",
        "after",
        "all",
        "also",
        "any",
        "been",
        "before",
        "being",
        "between",
        "both",
        "each",
        "few",
        "further",
        "here",
        "just",
        "more",
        "most",
        "other",
        "over",
        "same",
        "some",
        "such",
        "through",
        "too",
        "under",
        "until",
        "up",
        "very",
        "while",
    ]
)
_CJK_STOP = frozenset("的了是在和与及或也就都而")


def terms(text: str, *, cjk_characters: bool = True) -> list[str]:
    lowered = text.lower()
    found = [word for word in _LATIN.findall(lowered) if word not in STOPWORDS]
    for run in _CJK_RUN.findall(lowered):
        if cjk_characters or len(run) == 1:
            found += [ch for ch in run if ch not in _CJK_STOP]
        found += [run[i : i + 2] for i in range(len(run) - 1)]
    return found


@dataclass(frozen=True, slots=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def __bool__(self) -> bool:
        return bool(self.indices)


def _index(term: str) -> int:
    return mmh3.hash(term, signed=False)


def _vector(weights: dict[int, float]) -> SparseVector:
    ordered = sorted(weights.items())
    return SparseVector([i for i, _ in ordered], [w for _, w in ordered])


@dataclass(frozen=True, slots=True)
class Bm25:
    k1: float = 1.2
    b: float = 0.75
    average_terms: float = 120.0  # a typical chunk's length in terms; documents are chunked to similar sizes

    def document(self, text: str) -> SparseVector:
        counts = Counter(terms(text))
        length = sum(counts.values())
        norm = self.k1 * (1 - self.b + self.b * length / self.average_terms)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            index = _index(term)  # two terms may share a hash: their weights add up
            weights[index] = weights.get(index, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return _vector(weights)

    def query(self, text: str) -> SparseVector:
        # A question's single Chinese characters would match nearly every Chinese chunk; its
        # character pairs carry the words.
        return _vector({_index(term): 1.0 for term in set(terms(text, cjk_characters=False))})
