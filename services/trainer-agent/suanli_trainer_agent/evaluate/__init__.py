"""The evaluation runner a trainer agent starts for an evaluation job
(`python -m suanli_trainer_agent.evaluate [--config FILE]`): one model, or a fine-tune beside its
base, generating greedily on a held-out file, scored by BLEU, exact match and multiple-choice
accuracy, into `<output>/result.json`."""
