"""The grounded prompt an answer is asked with: numbered passages, then the question. The model
is told to answer from the passages only and to cite them by number, which `ask` maps back."""

from __future__ import annotations

from collections.abc import Sequence

from suanli_rag.index import Passage

SYSTEM_PROMPT = (
    "You answer questions about the user's documents using only the numbered passages given with "
    "the question. Cite the passages you use by their number in square brackets, like [1]. If the "
    "passages do not contain the answer, say that the documents do not say, and do not guess."
)


def source_label(passage: Passage) -> str:
    parts = [passage.filename]
    if passage.heading_path:
        parts.append(passage.heading_path)
    if passage.page:
        parts.append(f"page {passage.page}")
    return " — ".join(parts)


def user_prompt(question: str, passages: Sequence[Passage]) -> str:
    numbered = "\n\n".join(
        f"[{number}] ({source_label(p)})\n{p.text}" for number, p in enumerate(passages, start=1)
    )
    return f"Passages:\n\n{numbered}\n\nQuestion: {question}"
