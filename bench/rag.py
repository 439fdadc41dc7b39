"""RAG: ingestion throughput, search latency at scale and recall@5, against a plain LangChain pipeline.

One process, the rag service's own classes wired as suanli_rag.main wires them (SQLite and embedded
Qdrant in a temporary folder, the packaged all-MiniLM-L6-v2 on the CPU); the catalog's files come
from memory (its gRPC is not what is measured) and the JetStream worker is played by this script:
it takes the `document.uploaded` events that `KnowledgeBases.add_document` staged in the outbox and
runs `Ingestion.ingest` on each, as many documents at a time as the service's ingest_concurrency.
The corpus is the repository's own Markdown (README.md, examples/README.md, services/*/README*, every
.md outside .venv, var and node_modules).

  1. Ingestion: the corpus, copied as several files until it makes --min-chunks chunks, through
     add_document + ingest (parse, chunk, embed, upsert, progress rows, outbox), end to end, against
     the same model embedding the same chunks' texts (`embedding_text`) with `LocalEmbedder.embed_sync`
     at the same batch size, two ways: a document at a time (the unit ingestion embeds; embed_sync
     sorts a call's texts by length, so batches pad little) -- the target's baseline -- and the whole
     corpus in one call, sorted across documents, which only a batch job holding every document at
     once can do (with the corpus made of copies, its batches hold texts of equal length: no padding
     at all). The sides alternate after a warm-up; the best run of each counts (chunks per CPU second
     beside it, which other work on the machine disturbs less). Target: ingestion at 0.8 of the raw
     embedding throughput or better.
  2. Search: one knowledge base holding the corpus once (real chunks, embedded for real), filled with
     synthetic points (random unit vectors; random words of the corpus's vocabulary for BM25) up to
     10,000 and then --search-chunks points; at each size `Retrieval.search` (the query's embedding
     and the hybrid query, top 5) is timed for each question: p50 and p99 (of ~30 samples, p99 is
     the slowest). Embedded Qdrant scores every point (brute force); --qdrant-url runs the same
     against a Qdrant server. Then the corpus is ingested once more into the filled knowledge base,
     beside its first ingestion into the empty one: what the collection's size costs ingestion.
  3. Recall@5 on bench/rag_questions.json (questions on the repository's Markdown, each with a short
     phrase found only in the passage that answers it): a hit is a top-5 passage containing the
     phrase (case and whitespace ignored). Ours: the service's chunking and hybrid retrieval on the
     knowledge base of (2) before the synthetic fill. Peer: the LangChain RAG tutorial's pipeline,
     RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200) over the same files, the same
     MiniLM as LangChain `Embeddings`, dense-only `QdrantVectorStore` (in memory). Target: ours not
     worse.

    .venv/bin/python bench/rag.py [--quick] [--search-chunks 100000] [--qdrant-url URL] [--repeats 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from faststream.nats import NatsBroker
from langchain_core.documents import Document as LangChainDocument
from langchain_core.embeddings import Embeddings
from sqlalchemy import delete, select

from suanli_common.bus import EventPublisher, decode_event
from suanli_common.db import Database
from suanli_common.errors import NotFound
from suanli_common.ids import new_id
from suanli_common.logging import configure_logging
from suanli_common.outbox import Outbox
from suanli_common.proto.suanli.v1.events_pb2 import DocumentChanged
from suanli_rag.catalog_files import CatalogFile, DocumentTooLarge
from suanli_rag.chunking import Chunk, ChunkingConfig, chunk_document, embedding_text
from suanli_rag.domain import DocumentStatus, NewKnowledgeBase
from suanli_rag.embeddings import Embedders, LocalEmbedder, packaged_model_dir
from suanli_rag.index import ChunkIndex, IndexedChunk, Passage
from suanli_rag.ingestion import Ingestion
from suanli_rag.knowledge_bases import DOCUMENT_UPLOADED, KnowledgeBases, Limits
from suanli_rag.main import MIGRATIONS, VERSION_TABLE, chunk_index
from suanli_rag.models import OutboxRow
from suanli_rag.parsing import document_kind, parse_document
from suanli_rag.retrieval import Retrieval
from suanli_rag.settings import RagSettings
from suanli_rag.sparse import Bm25, SparseVector, terms

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = Path(__file__).with_name("rag_questions.json")
OWNER = "user_bench"
CHAT_MODEL = "smollm2-135m-instruct"  # a knowledge base names the model that answers from it
TARGET_RATIO = 0.8
TOP_K = 5
SAMPLE_CHUNKS = 10_000  # the smaller size searched first, so the scaling shows
UPSERT_BATCH = 1000
SKIPPED_DIRS = {".venv", "var", "node_modules", ".git"}
PEER_CHUNK_SIZE, PEER_CHUNK_OVERLAP = 1000, 200  # LangChain's RAG tutorial


# ---- the corpus and the questions -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceFile:
    name: str  # relative to the repository
    data: bytes


def corpus() -> list[SourceFile]:
    """The repository's Markdown, README.md first."""
    found = {REPO / "README.md", REPO / "examples" / "README.md", *REPO.glob("services/*/README*")}
    for folder, dirs, files in os.walk(REPO):
        # Hidden folders (.git, .pytest_cache) and build metadata hold no documentation of ours.
        dirs[:] = sorted(
            d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".") and not d.endswith(".egg-info")
        )
        found.update(Path(folder) / name for name in files if name.endswith(".md"))
    paths = sorted(
        (p for p in found if p.is_file() and document_kind(p.name) is not None),
        key=lambda p: (p != REPO / "README.md", str(p)),
    )
    return [SourceFile(str(p.relative_to(REPO)), p.read_bytes()) for p in paths]


@dataclass(frozen=True, slots=True)
class Question:
    question: str
    answer: str
    source: str


def normalised(text: str) -> str:
    return " ".join(text.split()).lower()


def load_questions(files: list[SourceFile]) -> list[Question]:
    questions = [Question(**item) for item in json.loads(QUESTIONS.read_text())]
    texts = [normalised(f.data.decode("utf-8", errors="replace")) for f in files]
    for q in questions:
        where = sum(text.count(normalised(q.answer)) for text in texts)
        if where != 1:  # the docs changed under the question set: say so rather than mis-score
            print(f"note: the answer {q.answer!r} occurs {where} times in the corpus ({q.question})")
    return questions


# ---- the service, wired as suanli_rag.main wires it --------------------------------------------------


class MemoryCatalog:
    """The catalog's files (the CatalogFiles protocol), held in memory."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[CatalogFile, bytes]] = {}

    def put(self, filename: str, data: bytes) -> str:
        file_id = new_id("file", "-")
        self._files[file_id] = (CatalogFile(file_id, filename, "assistants", len(data)), data)
        return file_id

    async def get(self, owner_id: str, file_id: str) -> CatalogFile:
        if file_id not in self._files:
            raise NotFound(f"no file {file_id}", param="file_id")
        return self._files[file_id][0]

    async def read(self, owner_id: str, file_id: str, limit: int) -> bytes:
        data = self._files[file_id][1]
        if len(data) > limit:
            raise DocumentTooLarge(f"the file is larger than {limit} bytes")
        return data


@dataclass
class Service:
    settings: RagSettings
    db: Database
    catalog: MemoryCatalog
    index: ChunkIndex
    knowledge_bases: KnowledgeBases
    ingestion: Ingestion
    retrieval: Retrieval
    chunking: ChunkingConfig


async def no_deployment(owner_id: str, model: str) -> str:
    raise NotFound(f"no deployment of {model}")  # knowledge bases here use the packaged model only


@asynccontextmanager
async def running_service(
    home: Path, embedder: LocalEmbedder, qdrant_url: str | None
) -> AsyncIterator[Service]:
    # The service's defaults (SUANLI_* variables apply, as to it), its state in the temporary folder.
    settings = RagSettings(home=home, qdrant_url=qdrant_url, qdrant_path=home / "qdrant")
    db = Database(f"sqlite+aiosqlite:///{home / 'rag.sqlite3'}")
    index = chunk_index(settings)  # Qdrant, embedded or the server, as the service opens it
    http = httpx.AsyncClient()
    try:
        await db.migrate(MIGRATIONS, version_table=VERSION_TABLE)
        # The relay (outbox.run) is never started: events stay in the table, where this script takes them.
        outbox = Outbox(db, OutboxRow, EventPublisher(NatsBroker(), source="rag"), source="rag")
        catalog = MemoryCatalog()
        embedders = Embedders(embedder, no_deployment, http)
        chunking = ChunkingConfig(settings.default_chunk_max_tokens, settings.default_chunk_overlap_tokens)
        limits = Limits(max_document_bytes=settings.max_document_bytes, default_chunking=chunking)
        yield Service(
            settings=settings,
            db=db,
            catalog=catalog,
            index=index,
            knowledge_bases=KnowledgeBases(db, outbox, catalog, index, embedders, limits),
            ingestion=Ingestion(
                db,
                outbox,
                catalog,
                index,
                embedders,
                count_tokens=embedder.count_tokens,
                max_document_bytes=settings.max_document_bytes,
                batch_size=settings.embedding_batch_size,
            ),
            retrieval=Retrieval(db, index, embedders, min_relevance=settings.min_relevance, bm25=Bm25()),
            chunking=chunking,
        )
    finally:
        index.close()
        await http.aclose()
        await db.close()


async def new_knowledge_base(service: Service, name: str) -> str:
    new = NewKnowledgeBase(
        name=name,
        model=CHAT_MODEL,
        embedding_model="",
        chunk_max_tokens=0,
        chunk_overlap_tokens=0,
        metadata={},
    )
    return (await service.knowledge_bases.create(OWNER, new)).id


async def take_uploaded_events(db: Database) -> list[DocumentChanged]:
    """What the outbox relay would publish and the worker receive: the staged document.uploaded events
    (the rows are removed, as the relay removes what it sent)."""
    async with db.session() as session:
        rows = list(await session.scalars(select(OutboxRow).order_by(OutboxRow.created_at, OutboxRow.id)))
        await session.execute(delete(OutboxRow))
    events = [decode_event(row.envelope, DocumentChanged) for row in rows]
    return [event.data for event in events if event.type == DOCUMENT_UPLOADED]


async def ingest(service: Service, kb_id: str, files: Sequence[SourceFile]) -> int:
    """Attaches the files and ingests them as the JetStream worker does; returns the chunks indexed."""
    attached: set[str] = set()
    for f in files:
        document = await service.knowledge_bases.add_document(
            OWNER, kb_id, service.catalog.put(f.name, f.data), {}
        )
        attached.add(document.file_id)
    gate = asyncio.Semaphore(service.settings.ingest_concurrency)

    async def worker(event: DocumentChanged) -> None:
        async with gate:
            await service.ingestion.ingest(event)

    await asyncio.gather(*(worker(event) for event in await take_uploaded_events(service.db)))
    documents = [
        d for d in await service.knowledge_bases.list_documents(OWNER, kb_id) if d.file_id in attached
    ]
    if len(documents) != len(files) or any(d.status != DocumentStatus.completed for d in documents):
        failed = [(d.filename, d.status, d.error_code, d.error_message) for d in documents]
        raise RuntimeError(f"ingestion did not complete every document: {failed}")
    return sum(d.chunks for d in documents)


def service_chunks(f: SourceFile, config: ChunkingConfig, embedder: LocalEmbedder) -> list[Chunk]:
    return chunk_document(parse_document(f.name, f.data), config, embedder.count_tokens)


# ---- 1. ingestion throughput ------------------------------------------------------------------------


@dataclass
class Throughput:
    chunks: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)  # the process's, all threads

    @property
    def rates(self) -> list[float]:
        return [self.chunks / s for s in self.seconds]

    @property
    def cpu_rates(self) -> list[float]:
        return [self.chunks / s for s in self.cpu_seconds]

    def time(self) -> Clock:
        return Clock(self)


class Clock:
    """Adds a run's wall and CPU seconds to a Throughput."""

    def __init__(self, into: Throughput) -> None:
        self._into = into

    def __enter__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def __exit__(self, *exc: object) -> None:
        self._into.seconds.append(time.perf_counter() - self._wall)
        self._into.cpu_seconds.append(time.process_time() - self._cpu)


@dataclass
class IngestionResult:
    files: int
    copies: int
    chunks_per_copy: int
    chunking_seconds: float
    ingestion: Throughput
    raw: Throughput  # a document at a time
    raw_corpus: Throughput  # every chunk in one call


async def measure_ingestion(
    service: Service, embedder: LocalEmbedder, files: list[SourceFile], min_chunks: int, repeats: int
) -> IngestionResult:
    started = time.perf_counter()
    per_copy = [chunk for f in files for chunk in service_chunks(f, service.chunking, embedder)]
    chunking_seconds = time.perf_counter() - started
    copies = max(1, math.ceil(min_chunks / len(per_copy)))
    copied = [SourceFile(f"copy{c:02d}/{f.name}", f.data) for c in range(copies) for f in files]
    documents = [
        [embedding_text(chunk) for chunk in service_chunks(f, service.chunking, embedder)] for f in files
    ] * copies
    texts = [text for document in documents for text in document]
    print(
        f"1. ingestion: {len(files)} Markdown file(s), {len(per_copy)} chunks, x {copies} copies = "
        f"{len(texts)} chunks; parse + chunk of one copy {chunking_seconds:.2f}s",
        flush=True,
    )
    # Warm-up: the model, and one document through the whole path (collection, SQL, Qdrant).
    embedder.embed_sync(texts[: service.settings.embedding_batch_size])
    warm = await new_knowledge_base(service, "warm-up")
    await ingest(service, warm, files[:1])
    await service.knowledge_bases.delete(OWNER, warm)

    ingestion, raw, raw_corpus = Throughput(len(texts)), Throughput(len(texts)), Throughput(len(texts))
    for run in range(repeats):
        kb_id = await new_knowledge_base(service, f"ingest-{run}")
        with ingestion.time():
            indexed = await ingest(service, kb_id, copied)
        stored = await service.index.count(kb_id)
        if indexed != len(texts) or stored != len(texts):
            raise RuntimeError(f"ingested {indexed} chunks ({stored} in Qdrant), chunked {len(texts)}")
        await service.knowledge_bases.delete(OWNER, kb_id)
        with raw.time():
            vectors = [vector for document in documents for vector in embedder.embed_sync(document)]
        assert len(vectors) == len(texts)
        with raw_corpus.time():
            assert len(embedder.embed_sync(texts)) == len(texts)
        print(
            f"   run {run + 1}: ingestion {ingestion.rates[-1]:.1f} chunks/s, raw embedding "
            f"{raw.rates[-1]:.1f} chunks/s a document at a time, {raw_corpus.rates[-1]:.1f} in one call "
            f"(per CPU second: {ingestion.cpu_rates[-1]:.1f}, {raw.cpu_rates[-1]:.1f})",
            flush=True,
        )
    return IngestionResult(len(files), copies, len(per_copy), chunking_seconds, ingestion, raw, raw_corpus)


# ---- 3. recall@5 ------------------------------------------------------------------------------------


@dataclass
class Recall:
    label: str
    chunks: int
    mean_chars: float
    ranks: list[int | None]  # rank (1-based) of the first passage holding the answer, per question
    top_chars: list[int]  # characters in the top 5, per question
    missed: list[str] = field(default_factory=list)

    def at(self, k: int) -> float:
        return sum(1 for rank in self.ranks if rank is not None and rank <= k) / len(self.ranks)

    @property
    def mrr(self) -> float:
        return statistics.fmean(1 / rank if rank else 0.0 for rank in self.ranks)


def first_hit(question: Question, texts: Sequence[str]) -> int | None:
    answer = normalised(question.answer)
    return next((rank for rank, text in enumerate(texts, start=1) if answer in normalised(text)), None)


def scored(
    label: str, chunk_texts: Sequence[str], questions: list[Question], found: list[list[str]]
) -> Recall:
    ranks = [first_hit(q, texts) for q, texts in zip(questions, found, strict=True)]
    return Recall(
        label=label,
        chunks=len(chunk_texts),
        mean_chars=statistics.fmean(len(t) for t in chunk_texts),
        ranks=ranks,
        top_chars=[sum(len(t) for t in texts) for texts in found],
        missed=[q.question for q, rank in zip(questions, ranks, strict=True) if rank is None],
    )


async def recall_ours(
    service: Service, embedder: LocalEmbedder, kb_id: str, chunk_texts: list[str], questions: list[Question]
) -> tuple[Recall, Recall]:
    hybrid: list[list[str]] = []
    dense_only: list[list[str]] = []
    for q in questions:
        passages = await service.retrieval.search(OWNER, kb_id, q.question, max_results=TOP_K)
        hybrid.append([p.text for p in passages])
        # Ablation: the same index searched by meaning only (no BM25 prefetch).
        [dense] = await embedder.embed([q.question])
        alone = await service.index.search(
            kb_id, dense, SparseVector([], []), limit=TOP_K, min_relevance=service.settings.min_relevance
        )
        dense_only.append([p.text for p in alone])
    return (
        scored("ours: service chunks + hybrid (Retrieval.search)", chunk_texts, questions, hybrid),
        scored("ours, dense only (ablation)", chunk_texts, questions, dense_only),
    )


class MiniLmEmbeddings(Embeddings):
    """The service's packaged MiniLM as LangChain embeddings: both sides embed with the same model."""

    def __init__(self, embedder: LocalEmbedder) -> None:
        self._embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed_sync(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embedder.embed_sync([text])[0]


def recall_langchain(
    embedder: LocalEmbedder, files: list[SourceFile], questions: list[Question]
) -> tuple[Recall, int]:
    """LangChain's RAG tutorial pipeline on the same files; also how many of its chunks are longer than
    MiniLM's 256-token window (embedded truncated, returned whole)."""
    from langchain_qdrant import QdrantVectorStore
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=PEER_CHUNK_SIZE, chunk_overlap=PEER_CHUNK_OVERLAP)
    documents = [
        LangChainDocument(page_content=f.data.decode("utf-8"), metadata={"source": f.name}) for f in files
    ]
    splits = splitter.split_documents(documents)
    store = QdrantVectorStore.from_documents(
        splits, MiniLmEmbeddings(embedder), location=":memory:", collection_name="langchain-peer"
    )
    found = [[d.page_content for d in store.similarity_search(q.question, k=TOP_K)] for q in questions]
    store.client.close()
    label = f"peer: LangChain splitter({PEER_CHUNK_SIZE}, {PEER_CHUNK_OVERLAP}) + MiniLM + Qdrant dense"
    texts = [d.page_content for d in splits]
    truncated = sum(1 for t in texts if embedder.count_tokens(t) > 254)  # 256 with [CLS] and [SEP]
    return scored(label, texts, questions, found), truncated


# ---- 2. search latency ------------------------------------------------------------------------------


@dataclass
class SearchStage:
    points: int
    synthetic: int
    added: int  # synthetic points upserted at this stage
    fill_seconds: float  # to upsert them
    latencies_ms: list[float]
    recall: float


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def fill_synthetic(
    service: Service,
    kb_id: str,
    first: int,
    count: int,
    dimension: int,
    vocabulary: list[str],
    rng: np.random.Generator,
) -> float:
    """Upserts `count` synthetic points, UPSERT_BATCH per Qdrant call, through `ChunkIndex.upsert` (the
    payload and vectors the service writes, none of ingestion's embedding); returns the seconds spent
    upserting (generating the points is not counted)."""
    bm25 = Bm25()
    upserting = 0.0
    for start in range(first, first + count, UPSERT_BATCH):
        size = min(UPSERT_BATCH, first + count - start)
        dense = rng.standard_normal((size, dimension), dtype=np.float32)
        dense /= np.linalg.norm(dense, axis=1, keepdims=True)
        batch: list[IndexedChunk] = []
        for offset, vector in enumerate(dense.tolist()):
            text = " ".join(rng.choice(vocabulary, size=int(rng.integers(30, 61))))
            chunk = Chunk(index=start + offset, text=text, heading_path="", page=None, start=0)
            batch.append(
                IndexedChunk(
                    file_id="synthetic",
                    attempt_id="synthetic",
                    filename="synthetic.md",
                    chunk=chunk,
                    dense=vector,
                    sparse=bm25.document(text),
                )
            )
        started = time.perf_counter()
        await service.index.upsert(kb_id, batch)
        upserting += time.perf_counter() - started
        done = start + size - first
        if done % 10_000 == 0 or done == count:
            print(
                f"   upserted {done}/{count} synthetic points ({done / upserting:.0f} points/s)", flush=True
            )
    return upserting


async def time_searches(service: Service, kb_id: str, questions: list[Question]) -> tuple[list[float], float]:
    await service.retrieval.search(OWNER, kb_id, questions[0].question, max_results=TOP_K)  # warm-up
    latencies: list[float] = []
    hits = 0
    for q in questions:
        started = time.perf_counter()
        passages: list[Passage] = await service.retrieval.search(OWNER, kb_id, q.question, max_results=TOP_K)
        latencies.append((time.perf_counter() - started) * 1000)
        hits += first_hit(q, [p.text for p in passages]) is not None
    return latencies, hits / len(questions)


async def measure_search(
    service: Service,
    kb_id: str,
    real: int,
    sizes: list[int],
    dimension: int,
    vocabulary: list[str],
    questions: list[Question],
) -> list[SearchStage]:
    rng = np.random.default_rng(42)
    stages: list[SearchStage] = []
    points = real
    for size in sizes:
        add = max(0, size - points)
        print(f"2. search: filling to {size} points ({add} synthetic) ...", flush=True)
        seconds = await fill_synthetic(service, kb_id, points - real, add, dimension, vocabulary, rng)
        points += add
        stored = await service.index.count(kb_id)
        if stored != points:
            raise RuntimeError(f"the collection holds {stored} points, not {points}")
        latencies, recall = await time_searches(service, kb_id, questions)
        print(f"   {points} points: search p50 {statistics.median(latencies):.0f} ms", flush=True)
        stages.append(SearchStage(points, points - real, add, seconds, latencies, recall))
    return stages


# ---- the report -------------------------------------------------------------------------------------


def report_ingestion(result: IngestionResult, settings: RagSettings, threads: int) -> float:
    print(
        f"\n1. Ingestion throughput: {result.files} Markdown file(s) x {result.copies} copies = "
        f"{result.ingestion.chunks} chunks of <= {settings.default_chunk_max_tokens} tokens "
        f"({settings.default_chunk_overlap_tokens} overlap); batch {settings.embedding_batch_size}, "
        f"{settings.ingest_concurrency} documents at a time, torch {threads} threads"
    )
    print(f"{'side':<44}{'runs':>5}{'best s':>9}{'best chunks/s':>15}{'per CPU s':>11}   each run, chunks/s")
    sides = (
        ("service: add_document + Ingestion.ingest", result.ingestion),
        ("raw: embed_sync, a document at a time", result.raw),
        ("raw: embed_sync, the whole corpus at once", result.raw_corpus),
    )
    for label, side in sides:
        print(
            f"{label:<44}{len(side.seconds):>5}{min(side.seconds):>9.2f}{max(side.rates):>15.1f}"
            f"{max(side.cpu_rates):>11.1f}   " + ", ".join(f"{r:.1f}" for r in side.rates)
        )
    ratio = max(result.ingestion.rates) / max(result.raw.rates)
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(
        f"ingestion / raw embedding a document at a time, best run of each: {ratio:.3f} "
        f"({verdict}: target {TARGET_RATIO} or better)"
    )
    print(
        f"   against the whole corpus embedded in one call: "
        f"{max(result.ingestion.rates) / max(result.raw_corpus.rates):.3f}"
    )
    print(
        f"   per CPU second (less sensitive to other work on the machine): "
        f"{max(result.ingestion.cpu_rates) / max(result.raw.cpu_rates):.3f}; parse + chunk alone: "
        f"{result.chunks_per_copy / result.chunking_seconds:.0f} chunks/s"
    )
    return ratio


def report_search(stages: list[SearchStage], real: int, where: str, questions: int) -> None:
    print(
        f"\n2. Search latency, Retrieval.search (query embedding + hybrid dense/BM25 query, RRF, "
        f"top {TOP_K}), {where}; {questions} questions each, p99 of {questions} samples is the slowest"
    )
    print(
        f"   {real} real chunks, the rest SYNTHETIC (random unit vectors; 30-60 random words of the corpus "
        "vocabulary for BM25, so query words occur in them)"
    )
    print(
        f"{'points':>9}{'synthetic':>11}{'added':>9}{'upsert s':>10}{'points/s':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'recall@5':>10}"
    )
    for s in stages:
        rate = f"{s.added / s.fill_seconds:.0f}" if s.fill_seconds else "-"
        print(
            f"{s.points:>9}{s.synthetic:>11}{s.added:>9}{s.fill_seconds:>10.1f}{rate:>10}"
            f"{statistics.median(s.latencies_ms):>9.1f}{pct(s.latencies_ms, 0.99):>9.1f}{s.recall:>10.3f}"
        )
    print(
        f"   (upsert s: seconds to upsert the points added, {UPSERT_BATCH} a call; "
        "recall@5: with the distractors)"
    )


def report_recall(results: list[Recall], truncated: int, questions: int) -> None:
    print(
        f"\n3. Recall@{TOP_K} on {questions} questions (bench/rag_questions.json), "
        "the corpus once, no distractors"
    )
    print(f"{'pipeline':<66}{'chunks':>7}{'chars':>7}{'R@5':>7}{'R@1':>7}{'MRR':>7}{'top-5 chars':>12}")
    for r in results:
        print(
            f"{r.label:<66}{r.chunks:>7}{r.mean_chars:>7.0f}{r.at(TOP_K):>7.3f}{r.at(1):>7.3f}{r.mrr:>7.3f}"
            f"{statistics.fmean(r.top_chars):>12.0f}"
        )
    for r in (results[0], results[-1]):
        for missed in r.missed:
            print(f"   missed by {r.label.split(':')[0]}: {missed}")
    print(f"   (the peer's chunks: {truncated} of {results[-1].chunks} are longer than MiniLM's 256 tokens)")
    ours, peer = results[0].at(TOP_K), results[-1].at(TOP_K)
    verdict = "PASS" if ours >= peer else "FAIL"
    print(f"ours {ours:.3f} vs peer {peer:.3f} recall@{TOP_K}: {verdict} (target: ours not worse)")


# ---- main -------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    import torch

    files = corpus()
    questions = load_questions(files)
    timed = questions[: args.questions] if args.questions else questions
    print(
        f"corpus: {', '.join(f.name for f in files)}; {len(questions)} questions; {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} at start",
        flush=True,
    )
    embedder = LocalEmbedder(packaged_model_dir(), batch_size=RagSettings().embedding_batch_size)
    with tempfile.TemporaryDirectory(prefix="suanli-bench-rag-") as tmp:
        async with running_service(Path(tmp), embedder, args.qdrant_url) as service:
            ingestion = await measure_ingestion(service, embedder, files, args.min_chunks, args.repeats)

            kb_id = await new_knowledge_base(service, "recall")
            started = time.perf_counter()
            real = await ingest(service, kb_id, files)
            into_empty = real / (time.perf_counter() - started)
            ours_texts = [c.text for f in files for c in service_chunks(f, service.chunking, embedder)]
            ours = await recall_ours(service, embedder, kb_id, ours_texts, questions)
            peer, truncated = recall_langchain(embedder, files, questions)

            embed_ms: list[float] = []
            for q in timed:
                started = time.perf_counter()
                embedder.embed_sync([q.question])
                embed_ms.append((time.perf_counter() - started) * 1000)
            vocabulary = sorted({t for f in files for t in terms(f.data.decode("utf-8", errors="replace"))})
            sizes = sorted({min(SAMPLE_CHUNKS, args.search_chunks), args.search_chunks})
            stages = await measure_search(service, kb_id, real, sizes, embedder.dimension, vocabulary, timed)
            # The same corpus once more, into the filled knowledge base: what its size costs ingestion.
            started = time.perf_counter()
            again = await ingest(service, kb_id, [SourceFile(f"again/{f.name}", f.data) for f in files])
            into_full = again / (time.perf_counter() - started)
            await service.knowledge_bases.delete(OWNER, kb_id)  # a Qdrant server keeps nothing of ours

    where = f"Qdrant server {args.qdrant_url}" if args.qdrant_url else "embedded Qdrant (local mode)"
    report_ingestion(ingestion, service.settings, torch.get_num_threads())
    report_search(stages, real, where, len(timed))
    print(f"   (the query's embedding alone, p50: {statistics.median(embed_ms):.1f} ms)")
    print(
        f"   ingesting the corpus once ({real} chunks, one run each): {into_empty:.1f} chunks/s into the "
        f"empty knowledge base, {into_full:.1f} chunks/s into the {stages[-1].points}-point one"
    )
    report_recall([*ours, peer], truncated, len(questions))
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (other work on the machine slows every side)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10,000 points, 1 repeat, 10 timed questions")
    parser.add_argument(
        "--search-chunks", type=int, default=100_000, help="points in the searched collection"
    )
    parser.add_argument("--qdrant-url", help="a Qdrant server (http://host:6333) instead of embedded Qdrant")
    parser.add_argument("--repeats", type=int, default=2, help="ingestion runs of each side, alternating")
    parser.add_argument("--min-chunks", type=int, default=300, help="ingested chunks (the corpus is copied)")
    parser.add_argument("--questions", type=int, default=0, help="questions timed per size (default: all)")
    args = parser.parse_args()
    if args.quick:
        args.search_chunks = min(args.search_chunks, SAMPLE_CHUNKS)
        args.repeats = 1
        args.questions = args.questions or 10
    configure_logging("bench", level="WARNING", fmt="console")
    # qdrant-client warns past 20,000 points in local mode: measuring that is the point here.
    warnings.filterwarnings("ignore", message="Local mode is not recommended")
    from transformers.utils import logging as transformers_logging

    # count_tokens runs over whole sections while chunking; the model's 512-token warning is noise there.
    transformers_logging.set_verbosity_error()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
