"""Custom GPU jobs: /api/v1/jobs (submit, list, get, logs, cancel), through the scheduler."""
