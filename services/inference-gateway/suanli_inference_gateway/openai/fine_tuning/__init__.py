"""The OpenAI fine-tuning API (/v1/fine_tuning/jobs): a fine-tune is a scheduler job that a trainer
agent runs with `python -m suanli_trainer_agent.finetune`; its metrics come back over METRICS."""
