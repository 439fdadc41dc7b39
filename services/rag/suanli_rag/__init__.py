"""Suanli's RAG service: knowledge bases, ingestion into Qdrant, hybrid retrieval."""
