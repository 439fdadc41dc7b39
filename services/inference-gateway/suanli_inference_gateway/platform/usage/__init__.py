"""The caller's usage (GPU time, requests, tokens, cost, storage): /api/v1/usage, /api/v1/admin/usage."""
