"""/api/v1/knowledge-bases: what OpenAI's vector stores have no shape for (ask, re-index)."""
