"""The cluster's GPU inventory: /api/v1/gpus, from the scheduler's slot ledger."""
