"""Search over a knowledge base, and the retrieval behind an answer."""

from __future__ import annotations

import json
from dataclasses import dataclass

from qdrant_client import models

from suanli_common.db import Database
from suanli_common.errors import InvalidRequest
from suanli_rag.embeddings import Embedders
from suanli_rag.filters import to_qdrant
from suanli_rag.index import ChunkIndex, Passage
from suanli_rag.models import KnowledgeBaseRow
from suanli_rag.prompts import SYSTEM_PROMPT, user_prompt
from suanli_rag.repository import RagRepository
from suanli_rag.sparse import Bm25

MAX_RESULTS = 50
MAX_QUERY_CHARS = 4000


@dataclass(frozen=True, slots=True)
class PreparedAnswer:
    model: str
    system_prompt: str
    user_prompt: str
    passages: list[Passage]


def check_query(query: str, max_results: int) -> None:
    if not query.strip():
        raise InvalidRequest("the query is empty", param="query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidRequest(f"the query is longer than {MAX_QUERY_CHARS} characters", param="query")
    if not 1 <= max_results <= MAX_RESULTS:
        raise InvalidRequest(f"max_num_results is 1 to {MAX_RESULTS}", param="max_num_results")


class Retrieval:
    def __init__(
        self, db: Database, index: ChunkIndex, embedders: Embedders, *, min_relevance: float, bm25: Bm25
    ) -> None:
        self._db = db
        self._index = index
        self._embedders = embedders
        self._min_relevance = min_relevance
        self._bm25 = bm25

    async def search(
        self,
        caller_id: str,
        knowledge_base_id: str,
        query: str,
        *,
        max_results: int = 10,
        filter_json: str = "",
        score_threshold: float = 0.0,
    ) -> list[Passage]:
        check_query(query, max_results)
        try:
            query_filter = to_qdrant(json.loads(filter_json)) if filter_json else None
        except json.JSONDecodeError:
            raise InvalidRequest("filters is not JSON", param="filters") from None
        kb = await self._knowledge_base(caller_id, knowledge_base_id)
        passages = await self._passages(kb, query, max_results, query_filter)
        return [p for p in passages if p.score >= score_threshold]

    async def prepare_answer(
        self, caller_id: str, knowledge_base_id: str, question: str, top_k: int = 5
    ) -> PreparedAnswer:
        check_query(question, top_k)
        kb = await self._knowledge_base(caller_id, knowledge_base_id)
        passages = await self._passages(kb, question, top_k, None)
        return PreparedAnswer(
            model=kb.model,
            system_prompt=SYSTEM_PROMPT,
            user_prompt=user_prompt(question, passages),
            passages=passages,
        )

    async def _knowledge_base(self, caller_id: str, knowledge_base_id: str) -> KnowledgeBaseRow:
        async with self._db.session() as session:
            return await RagRepository(session).owned(caller_id, knowledge_base_id)

    async def _passages(
        self, kb: KnowledgeBaseRow, query: str, max_results: int, query_filter: models.Filter | None
    ) -> list[Passage]:
        [dense] = await self._embedders.for_model(kb.owner_id, kb.embedding_model).embed([query])
        return await self._index.search(
            kb.id,
            dense,
            self._bm25.query(query),
            limit=max_results,
            query_filter=query_filter,
            min_relevance=self._min_relevance,
        )
