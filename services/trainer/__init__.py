"""Trainer service: fine-tunes a causal LM on an ingested FAQ dataset with TRL, evaluates it and tracks it in MLflow."""
