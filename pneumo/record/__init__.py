"""The record in MLflow: the one vocabulary of names (names.py), the store (store.py; a local
store's one folder: local.py), the job and trial runs, provenance, predictions CSV, and secret
redaction. Decides nothing about what is best."""
