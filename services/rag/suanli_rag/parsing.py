"""Turns an uploaded document's bytes (PDF, Word, HTML, Markdown, text, CSV) into text sections to chunk.

Sections are Markdown-ish: headings are '#' lines, so the chunker can follow the document's structure.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePath

import docx
from bs4 import BeautifulSoup, NavigableString
from bs4.element import CData, Tag
from docx.table import Table
from docx.text.paragraph import Paragraph
from pypdf import PdfReader
from pypdf.errors import DependencyError

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(
    {".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt", ".text", ".csv"}
)


class DocumentError(Exception):
    """A document that can never be indexed, whatever the retries: the upload itself is at fault.

    Codes: "unsupported_file", "encrypted_file", "corrupt_file", "empty_document".
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Section:
    """A run of a document's text: a PDF page (``page`` 1-based), or the whole of any other document.

    The text is normalised on construction: lines stripped, one space between words, at most one blank
    line in a row, no invisible characters. The chunker relies on it to find each chunk in the section.
    """

    text: str
    page: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", _normalise(self.text))


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """A document's sections in reading order, none of them empty."""

    sections: list[Section]

    @property
    def characters(self) -> int:
        return sum(len(section.text) for section in self.sections)


def document_kind(filename: str) -> str | None:
    """The file's lower-case extension (".pdf") if it is a kind we can index, else None."""
    extension = PurePath(filename).suffix.lower()
    return extension if extension in SUPPORTED_EXTENSIONS else None


def parse_document(filename: str, data: bytes) -> ParsedDocument:
    """The document's text sections; raises DocumentError for a document that can never be indexed.

    CPU-bound and synchronous: callers on an event loop run it in a thread.
    """
    kind = document_kind(filename)
    if kind is None:
        supported = ", ".join(sorted(SUPPORTED_EXTENSIONS))
        raise DocumentError(
            "unsupported_file", f"cannot index {filename!r}: the file types supported are {supported}"
        )
    if not data.strip():
        raise DocumentError("empty_document", "the document has no text to index (the file is empty)")
    sections = [section for section in _PARSERS[kind](data) if section.text]
    if not any(_BODY_LINE.search(section.text) for section in sections):  # headings alone are not indexed
        hint = " (a PDF of scanned images has none: run OCR on it first)" if kind == ".pdf" else ""
        raise DocumentError("empty_document", f"the document has no text to index{hint}")
    return ParsedDocument(sections)


def _normalise(text: str) -> str:
    """Light whitespace normalisation that keeps the structure (paragraph breaks, line breaks).

    Lines are stripped, runs of spaces become one, runs of blank lines become one (a paragraph break),
    other whitespace becomes a space and invisible characters (zero-width spaces, controls) are dropped.
    """
    lines: list[str] = []
    for raw_line in text.splitlines():  # also splits \r\n, \r, \f, \v, \u2028 and friends
        line = raw_line if raw_line.isprintable() else "".join(map(_printable_char, raw_line))
        line = _SPACE_RUN.sub(" ", line).strip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip()


def _printable_char(char: str) -> str:
    if char.isprintable():
        return char
    return " " if char.isspace() else ""


_SPACE_RUN = re.compile(r" {2,}")
_BODY_LINE = re.compile(r"^(?!#+(?: |$)).+$", re.MULTILINE)  # a line that is not a Markdown heading

# A line the chunker would take for a Markdown heading. Text from a format without Markdown headings
# (PDF, Word, HTML, plain text, CSV) is escaped like Markdown does, so '# of GPUs: 4' stays body text.
_HEADING_LIKE = re.compile(r"^([ \t]*)(?=#+(?:[ \t]|$))", re.MULTILINE)


def _escape_heading_marks(text: str) -> str:
    return _HEADING_LIKE.sub(r"\1\\", text)


# PDF


def _parse_pdf(data: bytes) -> list[Section]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not _opens_without_password(reader):
            raise DocumentError("encrypted_file", "the PDF is encrypted; upload it without a password")
        return [
            Section(_escape_heading_marks(page.extract_text() or ""), page=number)
            for number, page in enumerate(reader.pages, start=1)
        ]
    except (DocumentError, DependencyError, MemoryError):
        raise  # DependencyError: a missing package (cryptography) is our fault, not the document's
    except Exception as error:  # pypdf raises many kinds of errors on a damaged file
        raise DocumentError("corrupt_file", f"the PDF cannot be read ({error})") from error


def _opens_without_password(reader: PdfReader) -> bool:
    # A PDF may be encrypted with an empty user password (only the owner's actions are restricted).
    try:
        return bool(reader.decrypt(""))
    except DependencyError:
        raise
    except Exception:  # an encryption scheme pypdf does not implement
        return False


# Word


_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
# A password-protected .docx is an OLE container holding this stream instead of a zip.
_ENCRYPTED_PACKAGE = "EncryptedPackage".encode("utf-16-le")
_HEADING_STYLE = re.compile(r"heading\s*(\d)", re.IGNORECASE)


def _parse_docx(data: bytes) -> list[Section]:
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTED_PACKAGE in data:
            raise DocumentError(
                "encrypted_file", "the Word document is encrypted; upload it without a password"
            )
        raise DocumentError(
            "corrupt_file", "not a .docx file (an old .doc? save it as .docx and upload again)"
        )
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = [
            _docx_table(item) if isinstance(item, Table) else _docx_paragraph(item.text, _style_name(item))
            for item in document.iter_inner_content()
        ]
    except MemoryError:
        raise
    except Exception as error:  # not a zip, not a Word package, a damaged part: python-docx raises them all
        raise DocumentError("corrupt_file", f"the Word document cannot be read ({error})") from error
    return [Section("\n\n".join(blocks))]


def _style_name(paragraph: Paragraph) -> str:
    style = paragraph.style
    return (style.name or "") if style is not None else ""


def _docx_paragraph(text: str, style: str) -> str:
    text = text.strip()
    if not text:
        return ""
    heading = _HEADING_STYLE.fullmatch(style)
    if style == "Title" or heading:
        level = min(int(heading.group(1)), 6) if heading else 1
        return "#" * max(level, 1) + " " + " ".join(text.split())
    text = _escape_heading_marks(text)
    return f"- {text}" if style.startswith("List") else text


def _docx_table(table: Table) -> str:
    rows: list[str] = []
    for row in table.rows:
        cells: list[str] = []
        previous = None
        for cell in row.cells:
            if cell._tc is previous:  # a merged cell is listed once per grid column it spans
                continue
            previous = cell._tc
            if value := " ".join(cell.text.split()):
                cells.append(value)
        rows.append(_escape_heading_marks(" | ".join(cells)))
    return "\n".join(rows)


# HTML


_DROPPED_HTML = [
    "head",
    "script",
    "style",
    "noscript",
    "template",
    "nav",
    "svg",
    "canvas",
    "iframe",
    "object",
]
_HTML_BLOCKS = [
    "p", "div", "section", "article", "main", "aside", "header", "footer", "blockquote", "pre", "ul", "ol",
    "dl", "dt", "dd", "table", "figure", "figcaption", "address", "details", "summary", "hr", "caption",
    "form", "fieldset",
]  # fmt: skip
_HTML_WHITESPACE = re.compile(r"\s+")


def _parse_html(data: bytes) -> list[Section]:
    soup = BeautifulSoup(data, "html.parser")  # decodes by BOM, <meta charset> or by guessing
    title = _HTML_WHITESPACE.sub(" ", soup.title.get_text()).strip() if soup.title else ""
    for tag in soup.find_all(_DROPPED_HTML):
        tag.decompose()
    for string in soup.find_all(string=True):
        if type(string) not in (NavigableString, CData):
            continue  # a comment, the doctype: get_text() leaves them out, as long as they keep their type
        if string.find_parent("pre") is None:  # outside <pre>, any run of whitespace is one space
            string.replace_with(_escape_heading_marks(_HTML_WHITESPACE.sub(" ", string)))
        else:
            string.replace_with(_escape_heading_marks(str(string)))
    # Structure to Markdown-ish lines, inner-most things first: rows, headings, then block boundaries.
    for row in soup.find_all("tr"):
        cells = [_tag_text(cell) for cell in row.find_all(["td", "th"], recursive=False)]
        row.replace_with(f"\n{' | '.join(cell for cell in cells if cell)}")
    has_h1 = soup.find("h1") is not None
    for heading in soup.find_all(["h1", "h2", "h3", "h4", "h5", "h6"]):
        text = _tag_text(heading)
        heading.replace_with(f"\n\n{'#' * int(heading.name[1])} {text}\n\n" if text else "\n")
    for line_break in soup.find_all("br"):
        line_break.replace_with("\n")
    for item in soup.find_all("li"):
        item.insert_before("\n- ")
    for block in soup.find_all(_HTML_BLOCKS):
        block.insert_before("\n\n")
        block.insert_after("\n\n")
    text = soup.get_text()
    _reject_binary(text)
    if title and not has_h1:
        text = f"# {title}\n\n{text}"
    return [Section(text)]


def _tag_text(tag: Tag) -> str:
    return _HTML_WHITESPACE.sub(" ", tag.get_text()).strip()


# Markdown, plain text, CSV


def _parse_markdown(data: bytes) -> list[Section]:
    return [Section(_decode_text(data))]


def _parse_text(data: bytes) -> list[Section]:
    return [Section(_escape_heading_marks(_decode_text(data)))]


def _parse_csv(data: bytes) -> list[Section]:
    text = _decode_text(data)
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    delimiter = max(",;\t|", key=first_line.count)  # ties go to ','
    try:
        rows = [
            [" ".join(cell.split()) for cell in row]
            for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
        ]
    except csv.Error as error:
        raise DocumentError("corrupt_file", f"the CSV file cannot be read ({error})") from error
    rows = [row for row in rows if any(row)]
    if not rows:
        return []
    header, records = rows[0], rows[1:]
    lines = []
    for record in records:
        names = header + [""] * (len(record) - len(header))
        fields = [
            f"{name or f'column {number}'}: {value}"
            for number, (name, value) in enumerate(zip(names, record, strict=False), start=1)
            if value
        ]
        lines.append(_escape_heading_marks("; ".join(fields)))
    return [Section("\n".join(lines))]


def _decode_text(data: bytes) -> str:
    """Text files come from anywhere: UTF-8 most often, GB18030 from Chinese Windows, UTF-16 from Notepad."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as error:
            raise DocumentError("corrupt_file", "the file is not valid UTF-16 text") from error
    elif b"\x00" in data:
        raise DocumentError("corrupt_file", "the file is binary, not text")
    else:
        text = _decode_first(data, ("utf-8-sig", "gb18030")) or data.decode("latin-1")
    _reject_binary(text)
    return text


def _decode_first(data: bytes, encodings: tuple[str, ...]) -> str | None:
    for encoding in encodings:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return None


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def _reject_binary(text: str) -> None:
    # Latin-1 decodes any bytes, so binary data is told apart by its control characters.
    if text and len(_CONTROL_CHARS.findall(text)) > len(text) / 100:
        raise DocumentError("corrupt_file", "the file is binary, not text")


_PARSERS: dict[str, Callable[[bytes], list[Section]]] = {
    ".pdf": _parse_pdf,
    ".docx": _parse_docx,
    ".html": _parse_html,
    ".htm": _parse_html,
    ".md": _parse_markdown,
    ".markdown": _parse_markdown,
    ".txt": _parse_text,
    ".text": _parse_text,
    ".csv": _parse_csv,
}
