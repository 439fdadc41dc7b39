"""The fine-tune runner a trainer agent starts for a fine-tune job
(`python -m suanli_trainer_agent.finetune --config FILE`): LoRA, QLoRA or full fine-tuning of a
Hugging Face causal LM on chat data, with metrics on stdout, TensorBoard files, resumable
checkpoints, and the adapter and merged model as outputs."""
