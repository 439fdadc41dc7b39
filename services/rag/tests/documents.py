"""Small sample documents, built in memory, for the RAG service's parsing, chunking and ingestion tests."""

from __future__ import annotations

import io

import docx
from fpdf import FPDF
from pypdf import PdfReader, PdfWriter


def markdown_doc() -> bytes:
    """A short Markdown guide with two heading levels."""
    return (
        b"# Suanli guide\n"
        b"\n"
        b"Suanli runs language models on your own GPUs.\n"
        b"\n"
        b"## Install\n"
        b"\n"
        b"Download the installer and run it.\n"
        b"\n"
        b"### On Linux\n"
        b"\n"
        b"Run `make venv` and then `make run`.\n"
        b"\n"
        b"## Usage\n"
        b"\n"
        b"Open the dashboard and upload a document.\n"
    )


def chinese_markdown_doc() -> bytes:
    """The same kind of guide in Chinese: headings, and sentences without spaces between words."""
    return (
        "# 算力平台指南\n"
        "\n"
        "算力是一个自托管的大模型平台。它在你自己的显卡上运行语言模型。\n"
        "\n"
        "## 安装\n"
        "\n"
        "下载安装程序并运行。安装完成后打开控制台。\n"
        "\n"
        "## 使用\n"
        "\n"
        "在控制台上传文档，然后提问。\n"
    ).encode()


def pdf_doc(text_pages: list[str]) -> bytes:
    """A PDF with a page per string ("" makes a blank page); core Helvetica font, so latin-1 text only."""
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in text_pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 8, text)
    return bytes(pdf.output())


def encrypted_pdf(user_password: str = "secret", owner_password: str = "owner") -> bytes:
    """A one-page PDF encrypted with AES-256; with user_password="" anyone may open it (restricted)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_doc(["Confidential figures for 2024."]))))
    writer.encrypt(user_password, owner_password, algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_doc(
    heading: str, paragraphs: list[str], *, level: int = 1, table: list[list[str | None]] | None = None
) -> bytes:
    """A Word document: a heading ("Heading <level>" style; level 0 is "Title"), the paragraphs, then
    the table if given: rows of cells, a None cell merged into the cell on its left."""
    document = docx.Document()
    document.add_heading(heading, level=level)
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for row, values in zip(grid.rows, table, strict=True):
            cells = list(row.cells)
            for column, value in enumerate(values):
                if value is None:
                    cells[column - 1].merge(cells[column])
                else:
                    cells[column].text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def html_doc() -> bytes:
    """A web page with navigation, a script, a style sheet, headings, a list and a table."""
    return b"""<!doctype html>
<html>
<head>
  <title>Suanli pricing</title>
  <style>body { color: red; }</style>
  <script>var tracking = "do not index";</script>
</head>
<body>
  <nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
  <h1>Pricing</h1>
  <!-- build 42: not text either -->
  <p>Suanli is   free
     to self-host.</p>
  <h2>Plans</h2>
  <ul><li>Community: free</li><li>Enterprise: support included</li></ul>
  <table>
    <tr><th>Plan</th><th>GPUs</th></tr>
    <tr><td>Community</td><td>4</td></tr>
  </table>
  <script>console.log("not text");</script>
</body>
</html>
"""


def csv_doc() -> bytes:
    """A small CSV table with a header row and a blank line in the middle."""
    return b"model,parameters,licence\nllama-3-8b,8B,llama3\n\nqwen2-7b,7B,apache-2.0\n"
