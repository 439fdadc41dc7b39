"""Splits a parsed document into chunks small enough to embed, each with the path of headings it sits under.

Chunking is deterministic: ingestion derives a chunk's id from (file, index), so re-ingesting the same
document must give the same chunks in the same order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

from suanli_rag.parsing import ParsedDocument

_HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3"), ("####", "h4")]

# Coarsest first. Chinese has no spaces between words, so its sentence ends and commas come before
# the space; "" (any character) last, so that no piece is ever left longer than the limit.
_SEPARATORS = [
    "\n\n", "\n",
    "。", "！", "？", "；",
    ". ", "! ", "? ", "; ",
    "，", "、", ", ",
    " ", "",
]  # fmt: skip


MIN_CHUNK_TOKENS = 16
# all-MiniLM-L6-v2 reads 256 word pieces and the heading path is embedded with the chunk: a longer
# chunk would be cut off when embedded.
MAX_CHUNK_TOKENS = 224


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    max_tokens: int = 200
    overlap_tokens: int = 40

    def __post_init__(self) -> None:
        if not MIN_CHUNK_TOKENS <= self.max_tokens <= MAX_CHUNK_TOKENS:
            raise ValueError(
                f"chunks hold {MIN_CHUNK_TOKENS} to {MAX_CHUNK_TOKENS} tokens, not {self.max_tokens}"
            )
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError(
                f"overlap_tokens must be between 0 and max_tokens // 2 ({self.max_tokens // 2}), "
                f"not {self.overlap_tokens}"
            )


@dataclass(frozen=True, slots=True)
class Chunk:
    index: int  # 0.. in document order, across all sections
    text: str
    heading_path: str  # "Install > On Linux"; "" before the first heading
    page: int | None  # the section's page (1-based, PDF only)
    start: int  # offset of the text in its section's text: section.text[start:start + len(text)] == text


def chunk_document(
    document: ParsedDocument, config: ChunkingConfig, count_tokens: Callable[[str], int]
) -> list[Chunk]:
    """The document's chunks, at most config.max_tokens each as count_tokens counts them.

    Neighbouring chunks of one run of text under a heading share about config.overlap_tokens, so a
    sentence cut at a chunk boundary is whole in one of them.
    """
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=config.max_tokens,
        chunk_overlap=config.overlap_tokens,
        length_function=count_tokens,
        keep_separator="end",
        separators=_SEPARATORS,
    )
    chunks: list[Chunk] = []
    for section in document.sections:
        for heading_path, piece_start, piece in _pieces_under_headings(section.text):
            # The splitter's own start_index (add_start_index) guesses where to search from with the
            # overlap in tokens as if it were characters, and misses: chunks are found here instead.
            previous_start, previous_end = -1, 0
            for text in splitter.split_text(piece):
                if not text.strip():
                    continue
                offset = _find_next(piece, text, previous_start, previous_end)
                chunks.append(
                    Chunk(
                        index=len(chunks),
                        text=text,
                        heading_path=heading_path,
                        page=section.page,
                        start=piece_start + offset,
                    )
                )
                previous_start, previous_end = offset, offset + len(text)
    return chunks


def embedding_text(chunk: Chunk) -> str:
    """What is embedded for a chunk: its heading path gives it context ('Install > On Linux')."""
    return f"{chunk.heading_path}\n{chunk.text}" if chunk.heading_path else chunk.text


def _pieces_under_headings(text: str) -> list[tuple[str, int, str]]:
    """(heading path, offset, text) of each run of the text between headings, heading lines left out.

    The header splitter gives the paragraphs with their headings but rewrites the text (paragraph
    breaks become "  \\n"), so each paragraph is found in the text (lines stripped, as Section's
    normalisation guarantees) and consecutive paragraphs under the same headings are joined as they
    stand in the text.
    """
    splitter = MarkdownHeaderTextSplitter(_HEADINGS, return_each_line=True, strip_headers=True)
    runs: list[tuple[str, int, int]] = []
    cursor = 0
    for paragraph in splitter.split_text(text):
        start = _find_lines(text, paragraph.page_content, cursor)
        if start < 0:  # not expected for normalised text; such a paragraph is left out, never misplaced
            continue
        end = start + len(paragraph.page_content)
        path = " > ".join(paragraph.metadata[name] for _, name in _HEADINGS if paragraph.metadata.get(name))
        if runs and runs[-1][0] == path and not text[runs[-1][2] : start].strip():
            runs[-1] = (path, runs[-1][1], end)
        else:
            runs.append((path, start, end))
        cursor = end
    return [(path, start, text[start:end]) for path, start, end in runs]


def _find_next(piece: str, text: str, previous_start: int, previous_end: int) -> int:
    """Where the splitter's next chunk stands: it starts after the previous chunk's start and no later
    than the first character after its end (the splitter drops nothing but whitespace); in repetitive
    text the text stands at several such places, and the last one keeps the chunks' spans contiguous.
    """
    limit = previous_end
    while limit < len(piece) and piece[limit].isspace():
        limit += 1
    position = piece.rfind(text, previous_start + 1, limit + len(text))
    if position < 0:  # the splitter's last chunk may lie within the previous one (all overlap)
        position = piece.find(text, previous_start + 1)
    return position if position >= 0 else piece.find(text)


def _find_lines(text: str, lines: str, start: int) -> int:
    """Where the whole lines stand in the text from start on (a heading line may contain them too)."""
    position = text.find(lines, start)
    while position >= 0:
        end = position + len(lines)
        if (position == 0 or text[position - 1] == "\n") and (end == len(text) or text[end] == "\n"):
            return position
        position = text.find(lines, position + 1)
    return -1
