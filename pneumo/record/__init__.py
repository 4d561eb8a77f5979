"""The record in MLflow, and the only door to it (issue 29): no other package imports MLflow's tracking or
registry APIs (the pyfunc's release/package.py and release/serving.py import its flavour only). The Store
(client.py, with versions.py and queries.py) owns runs, params, metrics, tags, artifacts, registered
versions, aliases and the searches commands need; the JobRecord (jobs.py) is the job's open run. They answer
with the dataclasses of entities.py, never MLflow's objects. Every MLflow name is in names.py; which store
(store.py; a local store's one folder: local.py), params and job keys (params.py), provenance, the
predictions CSV, and secret redaction. Decides nothing about what is best."""
