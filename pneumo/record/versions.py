"""The Model Registry, through the Store: registered versions, their aliases, tags and descriptions, and
where a version's files are. Returns pneumo.record.entities.Version; decides nothing about which is best."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import mlflow
from mlflow.exceptions import MlflowException

from pneumo.record import names
from pneumo.record.door import MISSING, answers, as_version, pages
from pneumo.record.entities import NotFound, Version
from pneumo.runtime import quiet

_URI = re.compile(rf"^{re.escape(names.MODELS_SCHEME)}(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


def in_store(uri: str) -> bool:
    """Whether a model URI is read from the tracking store (a registered version or a run's artifact)."""
    return uri.startswith((names.MODELS_SCHEME, names.RUNS_SCHEME))


class Versions:
    """The registry half of pneumo.record.client.Store (it holds `_client`, `located` and `artifact_uri`)."""

    def version(self, number, name: str = names.MODEL_NAME) -> Version:
        with answers():
            return as_version(self._client.get_model_version(name, str(number)))

    def version_by_alias(self, alias: str, name: str = names.MODEL_NAME) -> Version | None:
        try:
            return as_version(self._client.get_model_version_by_alias(name, alias), (alias,))
        except MlflowException as e:
            if e.error_code in (*MISSING, "INVALID_PARAMETER_VALUE"):  # no such model, or no version holds it
                return None
            raise

    def version_of(self, uri: str) -> Version:
        """The registered version a models:/ URI names (by number or alias); ValueError for another URI."""
        m = _URI.match(uri)
        if not m:
            raise ValueError(f"{uri!r} is not a registered version: use {names.version_uri('NAME', 'VERSION')} or "
                             f"{names.alias_uri('NAME', 'ALIAS')}")
        if m["version"]:
            return self.version(m["version"], m["name"])
        with answers():
            return as_version(self._client.get_model_version_by_alias(m["name"], m["alias"]), (m["alias"],))

    def versions(self) -> list[Version]:
        """Every version of the model, each with its aliases (one search and one read, however many)."""
        found = list(pages(self._client.search_model_versions, f"name='{names.MODEL_NAME}'"))
        held: dict[str, list[str]] = {}
        if found:
            try:
                with answers():
                    for alias, version in self._client.get_registered_model(names.MODEL_NAME).aliases.items():
                        held.setdefault(str(version), []).append(alias)
            except NotFound:
                pass
        return [as_version(mv, tuple(held.get(str(mv.version), ()))) for mv in found]

    def registered(self, run_id: str) -> Version | None:
        """The version already registered from this run (a resumed job registers once), or None."""
        found = self._client.search_model_versions(f"name='{names.MODEL_NAME}' and run_id='{run_id}'")
        return as_version(found[0]) if found else None

    def register(self, run_id: str, model_uri: str, tags: Mapping[str, str]) -> str:
        """A new version of the model from `model_uri`, tagged; the job run is tagged with its number."""
        with quiet.printed():  # MLflow prints "Successfully registered model ..." on stderr
            mv = mlflow.register_model(model_uri, names.MODEL_NAME, tags=dict(tags))
        self._client.set_tag(run_id, names.TAG_REGISTERED_VERSION, mv.version)
        return str(mv.version)

    def set_alias(self, alias: str, version) -> None:
        self._client.set_registered_model_alias(names.MODEL_NAME, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        self._client.delete_registered_model_alias(names.MODEL_NAME, alias)

    def set_version_tags(self, version, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self._client.set_model_version_tag(names.MODEL_NAME, str(version), key, value)

    def delete_version_tags(self, version, keys: Iterable[str]) -> None:
        for key in keys:
            self._client.delete_model_version_tag(names.MODEL_NAME, str(version), key)

    def describe(self, version, text: str) -> None:
        """The version's description (its page in the MLflow UI)."""
        self._client.update_model_version(names.MODEL_NAME, str(version), description=text)

    def model_source(self, uri: str) -> str:
        """Where the files of a model URI are now (a registered version, a run's artifact; a path stays a path):
        in a moved or copied store, under its current folder."""
        if not in_store(uri):
            return uri
        if uri.startswith(names.MODELS_SCHEME):
            v = self.version_of(uri)
            with answers():
                return self.located(self._client.get_model_version_download_uri(v.name, v.version))
        run_id, _, path = uri.removeprefix(names.RUNS_SCHEME).partition("/")
        return self.artifact_uri(run_id, path)
