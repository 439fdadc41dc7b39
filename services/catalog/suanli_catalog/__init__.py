"""Suanli's catalog service: the model repository, datasets (OpenAI files) and artifacts, over gRPC."""
