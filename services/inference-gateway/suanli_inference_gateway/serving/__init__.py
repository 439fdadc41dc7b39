"""The serving controller: turns the scheduler's deployments into Ray Serve applications (one per
deployment, vLLM replicas through Ray Serve LLM) and reports back what became of them. It runs as a
process of its own (`python -m suanli_inference_gateway.serving`), the Ray driver; the gateway's
request path never imports Ray."""
