"""Parsing uploaded documents of every supported kind into text sections, and refusing the ones we can't."""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # importlib mode: make the sibling module importable

from documents import chinese_markdown_doc, csv_doc, docx_doc, encrypted_pdf, html_doc, markdown_doc, pdf_doc

from suanli_rag.parsing import (
    SUPPORTED_EXTENSIONS,
    DocumentError,
    ParsedDocument,
    Section,
    document_kind,
    parse_document,
)


def only_text(document: ParsedDocument) -> str:
    assert len(document.sections) == 1
    assert document.sections[0].page is None
    return document.sections[0].text


def refusal(filename: str, data: bytes) -> DocumentError:
    with pytest.raises(DocumentError) as raised:
        parse_document(filename, data)
    return raised.value


def test_document_kind_is_the_lower_case_extension_of_supported_files() -> None:
    assert document_kind("Report.PDF") == ".pdf"
    assert document_kind("notes/guide.Markdown") == ".markdown"
    assert document_kind("page.htm") == ".htm"
    assert document_kind("setup.exe") is None
    assert document_kind("README") is None
    assert {document_kind(f"file{extension}") for extension in SUPPORTED_EXTENSIONS} == SUPPORTED_EXTENSIONS


def test_unsupported_file_is_refused_with_the_supported_kinds() -> None:
    error = refusal("slides.pptx", b"PK\x03\x04 whatever")
    assert error.code == "unsupported_file"
    assert ".pdf" in error.message and ".docx" in error.message and ".csv" in error.message


def test_markdown_keeps_headings_and_paragraphs() -> None:
    text = only_text(parse_document("guide.md", markdown_doc()))
    assert text.startswith(
        "# Suanli guide\n\nSuanli runs language models on your own GPUs.\n\n## Install\n\n"
    )
    assert "\n\n### On Linux\n\nRun `make venv` and then `make run`.\n\n## Usage\n\n" in text


def test_chinese_markdown_is_read_as_utf8() -> None:
    text = only_text(parse_document("指南.md", chinese_markdown_doc()))
    assert text.startswith("# 算力平台指南\n\n算力是一个自托管的大模型平台。")
    assert "\n\n## 安装\n\n下载安装程序并运行。" in text


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        ("第一段：算力。\r\n\r\n第二段。".encode("gb18030"), "第一段：算力。\n\n第二段。"),  # Chinese Windows
        ("\ufeff第一段。".encode(), "第一段。"),  # UTF-8 with a byte order mark
        ("Notepad 记事本".encode("utf-16"), "Notepad 记事本"),  # UTF-16 with a byte order mark
        ("café crème".encode("latin-1"), "café crème"),
    ],
)
def test_text_files_are_decoded_from_common_encodings(encoded: bytes, expected: str) -> None:
    assert only_text(parse_document("notes.txt", encoded)) == expected


def test_whitespace_is_normalised_but_paragraph_breaks_are_kept() -> None:
    raw = "  Two   spaces\tand a tab  \n\n\n\nnext\u3000paragraph\u200b here \r\nlast line"
    assert only_text(parse_document("notes.text", raw.encode())) == (
        "Two spaces and a tab\n\nnext paragraph here\nlast line"
    )
    assert Section(raw).text == "Two spaces and a tab\n\nnext paragraph here\nlast line"


def test_plain_text_lines_that_look_like_headings_are_escaped() -> None:
    text = only_text(parse_document("notes.txt", b"# of GPUs: 4\n#hashtag stays\n## also escaped"))
    assert text == "\\# of GPUs: 4\n#hashtag stays\n\\## also escaped"


def test_pdf_gives_one_section_per_page_with_text() -> None:
    document = parse_document("manual.pdf", pdf_doc(["The first page.", "", "The third page."]))
    assert [(section.page, section.text) for section in document.sections] == [
        (1, "The first page."),
        (3, "The third page."),
    ]
    assert document.characters == len("The first page.") + len("The third page.")


def test_pdf_encrypted_with_a_password_is_refused() -> None:
    error = refusal("secret.pdf", encrypted_pdf("secret"))
    assert error.code == "encrypted_file"
    assert "upload it without a password" in error.message


def test_pdf_with_an_empty_user_password_is_read() -> None:
    document = parse_document("restricted.pdf", encrypted_pdf(user_password=""))
    assert [section.text for section in document.sections] == ["Confidential figures for 2024."]


@pytest.mark.parametrize("damage", ["truncated", "not_a_pdf"])
def test_damaged_pdf_is_corrupt(damage: str) -> None:
    good = pdf_doc(["Some text. " * 40])
    data = good[: len(good) // 2] if damage == "truncated" else b"%PDF-1.7\nthis is not really a PDF"
    assert refusal("broken.pdf", data).code == "corrupt_file"


def test_pdf_without_text_is_empty_and_the_message_mentions_scans() -> None:
    error = refusal("scan.pdf", pdf_doc(["", ""]))
    assert error.code == "empty_document"
    assert "scanned" in error.message


def test_docx_headings_paragraphs_and_tables_in_order() -> None:
    data = docx_doc(
        "Quarterly report",
        ["Revenue grew.", "# of customers rose."],
        table=[["Region", "Revenue", None], ["North", "12", "EUR"]],
    )
    assert only_text(parse_document("report.docx", data)) == (
        "# Quarterly report\n\nRevenue grew.\n\n\\# of customers rose.\n\nRegion | Revenue\nNorth | 12 | EUR"
    )


@pytest.mark.parametrize(("level", "marks"), [(0, "#"), (2, "##"), (4, "####")])
def test_docx_title_and_heading_styles_become_heading_lines(level: int, marks: str) -> None:
    text = only_text(parse_document("doc.docx", docx_doc("Overview", ["Body."], level=level)))
    assert text == f"{marks} Overview\n\nBody."


def test_docx_that_is_not_a_word_document_is_corrupt() -> None:
    not_word = io.BytesIO()
    with zipfile.ZipFile(not_word, "w") as archive:
        archive.writestr("hello.txt", "a zip, but not a Word document")
    assert refusal("a.docx", b"plain text renamed to .docx").code == "corrupt_file"
    assert refusal("b.docx", not_word.getvalue()).code == "corrupt_file"
    assert refusal("c.docx", docx_doc("Title", ["Text."])[:300]).code == "corrupt_file"


def test_password_protected_word_file_is_encrypted_and_old_doc_is_corrupt() -> None:
    # Word saves a password-protected document as an OLE container holding an "EncryptedPackage"
    # stream; only the markers matter to the parser, so a stand-in with them is enough here.
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500)
    error = refusal("locked.docx", ole + "EncryptedPackage".encode("utf-16-le") + bytes(100))
    assert error.code == "encrypted_file"
    assert "without a password" in error.message
    assert refusal("legacy.docx", ole + "WordDocument".encode("utf-16-le")).code == "corrupt_file"


def test_html_keeps_headings_lists_and_tables_and_drops_page_furniture() -> None:
    assert only_text(parse_document("pricing.html", html_doc())) == (
        "# Pricing\n\n"
        "Suanli is free to self-host.\n\n"
        "## Plans\n\n"
        "- Community: free\n"
        "- Enterprise: support included\n\n"
        "Plan | GPUs\n"
        "Community | 4"
    )


def test_html_title_is_the_heading_when_there_is_no_h1() -> None:
    page = b"<html><head><title>Release notes</title></head><body><p>Faster <b>startup</b>.</p></body></html>"
    assert only_text(parse_document("notes.HTM", page)) == "# Release notes\n\nFaster startup."


def test_html_in_gbk_is_decoded_by_its_meta_charset() -> None:
    page = '<html><head><meta charset="gbk"></head><body><h1>算力</h1><p>平台</p></body></html>'
    assert only_text(parse_document("zh.html", page.encode("gbk"))) == "# 算力\n\n平台"


def test_csv_rows_become_lines_of_named_values() -> None:
    assert only_text(parse_document("models.csv", csv_doc())) == (
        "model: llama-3-8b; parameters: 8B; licence: llama3\n"
        "model: qwen2-7b; parameters: 7B; licence: apache-2.0"
    )


def test_csv_with_semicolons_quotes_and_missing_values() -> None:
    data = b'name;notes;\nAda;"likes\nengines";extra\nBob;;\n'
    assert only_text(parse_document("people.CSV", data)) == (
        "name: Ada; notes: likes engines; column 3: extra\nname: Bob"
    )


def test_csv_with_only_a_header_is_empty() -> None:
    assert refusal("empty.csv", b"model,parameters\n\n").code == "empty_document"


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("notes.txt", b"a long text with a single NUL byte in it " * 10 + b"\x00"),
        ("notes.md", bytes(range(1, 256)) * 4),  # no NUL, but nothing like text
        ("table.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    ],
)
def test_binary_data_in_a_text_file_is_corrupt(filename: str, data: bytes) -> None:
    error = refusal(filename, data)
    assert error.code == "corrupt_file"
    assert "binary" in error.message


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("empty.pdf", b""),
        ("blank.md", b"  \n\n \t\n"),
        ("blank.txt", "\u3000\u200b\n".encode()),
        ("blank.html", b"<html><head><title>A title only</title></head><body><script>f()</script></body>"),
        ("blank.docx", docx_doc("", ["", "   "])),
    ],
)
def test_document_without_text_is_empty(filename: str, data: bytes) -> None:
    error = refusal(filename, data)
    assert error.code == "empty_document"
    assert "no text to index" in error.message
