"""The platform REST API under /api/v1: one folder per surface (router, protocol models, calls)."""
