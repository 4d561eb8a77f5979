"""The record in MLflow: the one vocabulary of names (names.py), the store, the job and trial
runs, provenance, predictions CSV, and secret redaction. Decides nothing about what is best."""
