"""The caller's API keys: /api/v1/api-keys."""
