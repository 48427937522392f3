"""Ingest: read FAQ Q-A data from files or databases, clean it, redact PII, dedup and split it into a dataset."""
