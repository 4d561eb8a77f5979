"""Registered versions: what a job leaves in the Model Registry, and how it is read back.

A job writes its model's record through this module (`log_predictions`, `version_tags`,
`register`), and promotion reads it back here: each format is written in one function, beside
its reader. MLflow is imported inside functions: the CLI imports this module for its defaults
and must start fast.
"""

from __future__ import annotations

import re

from pneumo.record import names, predictions

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def log_predictions(client, run_id: str, hashes, patients, y, probabilities,
                    artifact: str = names.PREDICTIONS_ARTIFACT) -> None:
    """The job's test predictions, one row an image: what a paired bootstrap between two versions reads (and
    its validation predictions: what an ensemble of jobs is thresholded on, after the fact)."""
    rows = ((h, p, int(t), round(float(q), 6)) for h, p, t, q in zip(hashes, patients, y, probabilities))
    client.log_text(run_id, predictions.to_csv(names.PREDICTION_COLUMNS, rows), artifact)


def read_predictions(path) -> list[tuple[str, str, int, float]]:
    hash_, patient, y_true, probability = names.PREDICTION_COLUMNS
    rows = [(r[hash_], r[patient], int(float(r[y_true])), float(r[probability])) for r in predictions.read(path)]
    return sorted(rows)  # aligned by (hash, patient): duplicate images (same bytes) score alike


def version_tags(run_id: str, data_digest: str, test_digest: str, threshold: float, results: dict,
                 no_guard: str | None = None) -> dict[str, str]:
    """What a registered version carries about its job: promotion and the registry UI read these.
    `no_guard`: why the job could not fit the out-of-distribution guard (None: the model carries it)."""
    return {
        names.VERSION_TAG_RUN_ID: run_id,
        names.TAG_DATA_DIGEST: data_digest,
        names.TAG_TEST_DIGEST: test_digest,
        names.THRESHOLD: str(threshold),
        **{m: str(results[m]) for m in names.TEST_METRICS if m in results},
        **({names.TAG_NO_GUARD: no_guard} if no_guard is not None else {}),
    }


def missing_guard(mv) -> str | None:
    """Why the version's job could not fit its out-of-distribution guard, or None (it has it, or predates the tag)."""
    return (mv.tags or {}).get(names.TAG_NO_GUARD)


def registered(client, run_id: str):
    """The version already registered from this run (a resumed job registers once), or None."""
    found = client.search_model_versions(f"name='{names.MODEL_NAME}' and run_id='{run_id}'")
    return found[0] if found else None


def register(client, run_id: str, model_uri: str, tags: dict[str, str]) -> str:
    """A new version of the model from `model_uri`, tagged; the job run is tagged with its number."""
    import mlflow

    from pneumo.runtime import quiet

    with quiet.printed():  # MLflow prints "Successfully registered model ..." on stderr
        mv = mlflow.register_model(model_uri, names.MODEL_NAME, tags=tags)
    client.set_tag(run_id, names.TAG_REGISTERED_VERSION, mv.version)
    return str(mv.version)


def previous_alias(alias: str) -> str:
    return names.PREVIOUS if alias == names.CHAMPION else f"{alias}-{names.PREVIOUS}"


def by_alias(c, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_model_version_by_alias(names.MODEL_NAME, alias)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def all_versions(c) -> list:
    from pneumo.record.store import pages

    return list(pages(c.search_model_versions, f"name='{names.MODEL_NAME}'"))


def logged(mv, run, name: str):
    """A number the job logged: the run's metric, else the version's tag (string)."""
    value = names.finite(run.data.metrics.get(name)) if run is not None else None
    return value if value is not None else names.finite((mv.tags or {}).get(name))


def tested_on(mv, run):
    return (mv.tags or {}).get(names.TAG_TEST_DIGEST) or (run.data.tags.get(names.TAG_TEST_DIGEST) if run else None)


def run_id_of(mv):
    return mv.run_id or (mv.tags or {}).get(names.VERSION_TAG_RUN_ID)


def run_of(c, run_id):
    from mlflow.exceptions import MlflowException

    try:
        return c.get_run(run_id) if run_id else None
    except MlflowException:
        return None


def default_client():
    from pneumo.record.store import connect

    return connect()


def version_of(client, uri: str):
    """The registered version a models:/ URI names (by number or alias)."""
    m = _URI.match(uri)
    if not m:
        raise ValueError(f"{uri!r} is not a registered version: use models:/NAME/VERSION or models:/NAME@ALIAS")
    if m["version"]:
        return client.get_model_version(m["name"], m["version"])
    return client.get_model_version_by_alias(m["name"], m["alias"])


def in_store(uri: str) -> bool:
    """Whether a model URI is read from the tracking store (a registered version or a run's artifact)."""
    return uri.startswith(("models:/", "runs:/"))


def load_model(uri: str, client=None):
    """The pyfunc model at `uri` (models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN/PATH, or a path),
    loaded from a private copy. Loading a models:/ URI in place makes MLflow write a
    registered_model_meta file into the version's folder in the store, and a command that reads must
    not change the store; a moved store's versions are found under its current folder."""
    import shutil
    import tempfile
    import weakref

    import mlflow

    from pneumo.record import store

    source = uri
    if in_store(uri):
        client = client or store.connect()
        if uri.startswith("models:/"):
            mv = version_of(client, uri)
            source = store.located(client, client.get_model_version_download_uri(mv.name, mv.version))
        else:
            run_id, _, path = uri.removeprefix("runs:/").partition("/")
            source = f"{store.located(client, client.get_run(run_id).info.artifact_uri)}/{path}"
    copy = tempfile.mkdtemp(prefix="pneumo-model-")
    try:
        model = mlflow.pyfunc.load_model(source, dst_path=copy)
    except BaseException:
        shutil.rmtree(copy, ignore_errors=True)
        raise
    weakref.finalize(model, shutil.rmtree, copy, True)  # the copy lives as long as the model (or the process)
    return model
