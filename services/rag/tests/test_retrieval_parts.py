"""The pure parts of retrieval: BM25 terms and vectors, OpenAI filters as Qdrant filters."""

from __future__ import annotations

import pytest
from qdrant_client import models

from suanli_common.errors import InvalidRequest
from suanli_rag.filters import to_qdrant
from suanli_rag.sparse import Bm25, terms


def test_terms_drop_stopwords_and_split_chinese_into_characters_and_pairs() -> None:
    assert terms("What is the LAUNCH code of node-7?") == ["launch", "code", "node-7"]
    assert terms("上传文档") == ["上", "传", "文", "档", "上传", "传文", "文档"]
    assert terms("的了是") == ["的了", "了是"]  # particles alone say nothing; in a pair they may


def test_bm25_saturates_repeated_terms_and_queries_weigh_each_term_once() -> None:
    bm25 = Bm25()
    once, thrice = bm25.document("gpu"), bm25.document("gpu gpu gpu")
    assert once.indices == thrice.indices
    assert once.values[0] < thrice.values[0] < 3 * once.values[0]
    query = bm25.query("gpu gpu slots")
    assert len(query.indices) == 2 and query.values == [1.0, 1.0]
    assert not bm25.query("the of and")  # nothing but stopwords: no keyword search at all


def test_openai_filters_become_qdrant_filters() -> None:
    eq = to_qdrant({"type": "eq", "key": "team", "value": "b"})
    assert eq == models.Filter(
        must=[models.FieldCondition(key="attributes.team", match=models.MatchValue(value="b"))]
    )
    either = to_qdrant(
        {
            "type": "or",
            "filters": [
                {"type": "gte", "key": "year", "value": 2026},
                {"type": "in", "key": "team", "value": ["a"]},
            ],
        }
    )
    assert either.should is not None and len(either.should) == 2
    assert to_qdrant({"type": "ne", "key": "team", "value": "b"}).must_not


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "like", "key": "a", "value": 1},
        {"type": "eq", "value": 1},
        {"type": "gt", "key": "year", "value": "soon"},
        {"type": "and", "filters": []},
        "team = b",
    ],
)
def test_a_bad_filter_is_a_bad_request_naming_filters(spec: object) -> None:
    with pytest.raises(InvalidRequest) as refused:
        to_qdrant(spec)
    assert refused.value.param == "filters"
