"""Fine-tuning on feedback: examples from stored feedback (dataset, answers), LoRA adapters (lora),
the SFT loop (sft) and a preference loss (preference), runs from queue to registered candidate
(runner), model versions with promotion and rollback (registry), the Celery job (jobs) and the
`keye train` commands (cli)."""
