"""The OpenAI Files API (/v1/files): datasets and documents, stored and validated by the catalog."""
