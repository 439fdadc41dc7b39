"""Suanli's auth service: users, sign-in, access tokens, API keys and quotas, over gRPC."""
