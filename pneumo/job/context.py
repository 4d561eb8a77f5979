"""The job's context: what every phase of a job reads (its config, data, store, search, record), built once by
pneumo.job.phases.load; and the start-up checks that run before any of it (and before Keras is imported)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from pneumo.config import checks, keys
from pneumo.record import redact
from pneumo.record import store as stores
from pneumo.record.jobs import JobName, SystemMetrics
from pneumo.runtime import quiet

if TYPE_CHECKING:  # the phases' types: importing them loads Keras
    from pneumo.data.base import Splits
    from pneumo.record.client import Store
    from pneumo.record.entities import Run
    from pneumo.record.jobs import JobRecord
    from pneumo.search.session import Search


@dataclass(frozen=True)
class Job:
    """One Hydra job, as its phases see it."""

    cfg: DictConfig
    plain: dict  # the resolved config, as params and the job key read it
    store: Store
    experiment_id: str
    splits: Splits
    load_s: float  # seconds to load the splits
    search: Search
    name: JobName
    determinism: str  # what the backend's kernels were set to (a provenance tag)
    prior: Run | None  # this job's latest run, if it ran before
    record: JobRecord | None = None  # the job's run, once open

    @property
    def worker(self) -> bool:
        """A distributed search's worker: it runs the chief's trials; the chief owns the job's run."""
        return self.cfg.distributed.role == "worker"

    @property
    def done(self) -> bool:
        """Finished before, and not to be run again (restart=true runs it again)."""
        return self.prior is not None and self.prior.finished and not self.cfg.restart

    @property
    def resumed(self) -> Run | None:
        """The run this job goes on with (a killed one's), or None for a new run."""
        return self.prior if self.prior is not None and not self.cfg.restart else None

    @property
    def run_name(self) -> str:
        return " ".join(o for o in self.name.overrides if keys.part_of_job(o.partition("=")[0])) or "defaults"

    @property
    def system_metrics(self) -> SystemMetrics | None:
        tracking = self.cfg.tracking
        return SystemMetrics(tracking.system_metrics_interval) if tracking.system_metrics else None


def check(cfg: DictConfig) -> None:
    """Everything that can be wrong with the config or the store fails here, before the store is touched (a
    bad command leaves MLflow exactly as it was) and before Keras is imported (seconds)."""
    checks.check(cfg)
    stores.check(cfg.tracking.uri, cfg.tracking.store, launched())
    quiet.libraries(cfg.trainer.verbose)  # before the Keras backend is imported: its chatter stays off the console


def tuner_dir(cfg) -> Path:
    return Path(cfg.paths.cache) / "tuner" / cfg.experiment  # shared by a chief and its workers


def hydra_job() -> tuple[list[str], int, str]:
    """(the job's overrides, credentials redacted; its number in a multirun; the multirun's folder or '')."""
    if not HydraConfig.initialized():
        return [], 0, ""
    hc = HydraConfig.get()
    multirun = str(Path(hc.sweep.dir).resolve()) if hc.mode == RunMode.MULTIRUN else ""
    return redact.redact_overrides(list(hc.overrides.task)), hc.job.get("num", 0), multirun


def launched() -> Path | None:
    """The folder pneumo was started in (a relative store path is taken from it), not Hydra's job folder."""
    return Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else None
