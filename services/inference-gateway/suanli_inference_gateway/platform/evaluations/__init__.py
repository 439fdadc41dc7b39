"""Evaluations: /api/v1/evaluations runs a model, or a fine-tune and its base side by side, on a
held-out file as a scheduler job (`python -m suanli_trainer_agent.evaluate`); the scores are the
job's result."""
