"""The OpenAI inference surface: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings,
routed to the Ray Serve application of the deployment that serves the requested model."""
