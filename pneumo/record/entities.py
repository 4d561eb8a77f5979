"""What the store hands back: small frozen records, never MLflow's own objects (as `mlflow.entities` are
to MlflowClient). A run's metrics, params and tags stay maps by name, as MLflow keeps them: the names
are the vocabulary's (pneumo.record.names). Imports nothing heavy: the CLI reads these types."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from pneumo.record import names

# MLflow's own run and version statuses.
RUNNING, FINISHED, FAILED, KILLED = "RUNNING", "FINISHED", "FAILED", "KILLED"
READY = "READY"  # a registered version whose files are in place


class RecordError(Exception):
    """What the store answered instead of what was asked (MLflow's message, first line first)."""

    @property
    def message(self) -> str:
        return str(self)


class NotFound(RecordError, LookupError):
    """A run, version, alias or experiment the store does not hold."""


@dataclass(frozen=True)
class Run:
    """One MLflow run, as pneumo reads it."""

    id: str
    name: str
    experiment_id: str
    status: str  # RUNNING, FINISHED, FAILED, KILLED
    start_ms: int | None
    end_ms: int | None
    metrics: Mapping[str, float] = field(default_factory=dict)  # the latest value of each
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str | None:
        return self.tags.get(names.TAG_ROLE)

    @property
    def parent_id(self) -> str | None:
        return self.tags.get(names.PARENT_RUN_ID)

    @property
    def finished(self) -> bool:
        return self.status == FINISHED

    @property
    def oracle(self) -> str | None:
        """Where a RUNNING chief's oracle listens (host:port), or None."""
        return self.tags.get(names.TAG_ORACLE) if self.status == RUNNING else None

    @property
    def duration_s(self) -> float | None:
        return (self.end_ms - self.start_ms) / 1000 if self.end_ms and self.start_ms else None

    def metric(self, name: str) -> float | None:
        """The metric as a finite float, or None (missing, NaN, infinite)."""
        return names.finite(self.metrics.get(name))


@dataclass(frozen=True)
class Version:
    """A registered model version."""

    name: str  # the registered model's
    version: str  # its number, as MLflow spells it
    run_id: str | None  # the job run that registered it (the version's own field, else its tag)
    status: str  # READY when its files are in place
    tags: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    aliases: tuple[str, ...] = ()  # filled where the caller asked for them (Store.versions)

    @property
    def number(self) -> int:
        return int(self.version)

    @property
    def uri(self) -> str:
        return names.version_uri(self.name, self.version)

    @property
    def no_guard(self) -> str | None:
        """Why its job could not fit the out-of-distribution guard; None: it has it (or predates the tag)."""
        return self.tags.get(names.TAG_NO_GUARD)

    @property
    def test_digest(self) -> str | None:
        return self.tags.get(names.TAG_TEST_DIGEST)

    def number_logged(self, name: str) -> float | None:
        """A number its job tagged it with (test metrics, the threshold), as a finite float or None."""
        return names.finite(self.tags.get(name))


@dataclass(frozen=True)
class Evaluation:
    """A `pneumo evaluate` run: a version scored on a labelled folder, nested under the version's job."""

    run_id: str
    job_run_id: str | None
    folder: str | None
    version: str | None
    test_digest: str | None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Change:
    """A recorded value that differs now (a library version, the device, the commit)."""

    tag: str
    was: str
    now: str
