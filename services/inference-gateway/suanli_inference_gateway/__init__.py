"""Suanli's public HTTP edge: the OpenAI API (`/v1`), the platform REST API (`/api/v1`) and the console."""
