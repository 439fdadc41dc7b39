"""The OpenAI-compatible API under /v1: one folder per surface (`chat/`, `files/`, `fine_tuning/`,
`vector_stores/`), each with its router, its protocol models and the calls to the owning service."""
