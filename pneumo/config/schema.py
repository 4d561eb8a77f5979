"""Typed schemas for every config group (Hydra structured configs).

Types live here, values in conf/*.yaml. Each YAML option names its schema in
its defaults list, so a misspelled key or a wrong type in an override fails
at composition, naming the key, before any data is loaded or model trained.
Fields that may hold a search space (see `pneumo.config.space`) are typed Any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from pneumo.config import paths


@dataclass
class Paths:
    root: str = MISSING
    cache: str = MISSING


@dataclass
class DataConfig:
    source: str = MISSING  # synthetic | folder | kaggle
    root: Optional[str] = None  # folder: the Kaggle-layout root; synthetic/kaggle: where it is written
    dataset: str = "paultimothymooney/chest-xray-pneumonia"  # kaggle only
    n_images: int = 600  # synthetic only
    image_px: int = 128  # synthetic only: side of the generated JPEGs
    normal_fraction: float = 0.26  # synthetic only: Kermany's train split is 26% NORMAL
    seed: int = 0  # synthetic images and the split
    val_fraction: float = 0.15  # of train patients, carved patient-disjoint
    test_fraction: float = 0.15  # only when the source has no test/ and no test_root
    # a folder with NORMAL/ and PNEUMONIA/ (an external test set): the test split instead of the source's
    test_root: Optional[str] = None
    fold_kaggle_val: bool = True  # the 16-image Kaggle val/ is too small to select on
    cache_dir: str = MISSING
    workers: int = 0  # decode processes; 0 = one per core


@dataclass
class CNNConfig:
    _target_: str = "pneumo.model.builders.cnn"
    filters: Any = 32
    blocks: Any = 3
    kernel_size: Any = 3
    dense_units: Any = 128
    dropout: Any = 0.5


@dataclass
class ResNetConfig:
    _target_: str = "pneumo.model.builders.resnet"
    filters: Any = 32
    stages: Any = 3
    blocks_per_stage: Any = 1
    dropout: Any = 0.3


@dataclass
class TransferConfig:
    _target_: str = "pneumo.model.builders.transfer"
    backbone: Any = "MobileNetV2"
    weights: Optional[str] = None  # "imagenet" needs a download
    trainable: Any = True  # False: frozen backbone, only the head trains (with pretrained weights)
    input_scale: float = 2.0  # backbone input = pixel/255 * scale + offset
    input_offset: float = -1.0
    dropout: Any = 0.2


@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    learning_rate: Any = 1e-3
    rho: Any = None  # rmsprop
    momentum: Any = None  # rmsprop, sgd
    nesterov: Optional[bool] = None  # sgd
    beta_1: Any = None  # adam
    beta_2: Any = None  # adam
    weight_decay: Any = None


@dataclass
class AugmentationConfig:
    _target_: str = "pneumo.model.builders.augmentation"
    flip: Any = False  # horizontal: moves the heart; off by default
    rotation: Any = 0.0  # fraction of a full turn
    zoom: Any = 0.0
    translation: Any = 0.0  # fraction of the side
    gamma: Any = 0.0  # largest |log gamma|: exposure differs between machines and years
    contrast: Any = 0.0
    brightness: Any = 0.0  # fraction of full scale


@dataclass
class TunerConfig:
    _target_: str = MISSING
    objective: str = "val_auc"
    max_trials: Optional[int] = None
    executions_per_trial: int = 1
    seed: Optional[int] = None
    max_retries_per_trial: int = 1
    max_consecutive_failed_trials: int = 3
    max_model_size: Optional[int] = None  # parameters; a bigger model fails its trial (no OOM mid-search)
    start_with_defaults: bool = False  # the first trial takes every space's default (random, bayesian)
    # bayesian
    num_initial_points: Optional[int] = None
    # hyperband
    max_epochs: Optional[int] = None
    factor: Optional[int] = None
    hyperband_iterations: Optional[int] = None


@dataclass
class EarlyStoppingConfig:
    monitor: str = "val_loss"
    patience: int = 3


@dataclass
class ReduceLRConfig:
    monitor: str = "val_loss"
    factor: float = 0.3
    patience: int = 2
    min_lr: float = 1e-6


@dataclass
class TrainerConfig:
    epochs: int = 10
    batch_size: int = 32
    image_size: int = 128  # px; images are decoded (and cached) at this size
    standardize: bool = False  # each film to zero mean, unit variance inside the model (train and serve)
    class_weight: bool = True  # the data is ~74% PNEUMONIA
    early_stopping: Optional[EarlyStoppingConfig] = field(default_factory=EarlyStoppingConfig)
    reduce_lr: Optional[ReduceLRConfig] = field(default_factory=ReduceLRConfig)
    # A trial whose best val AUC is within chance_z standard errors of 0.5 fails (0: only AUC <= 0.5;
    # null: no check, for toy data too small for it)
    chance_z: Optional[float] = 1.645
    precision: str = "float32"  # or mixed_float16 (GPU)
    # The best trial's hyperparameters trained with this many seeds (the search's own fit is the first):
    # the parent run gets each metric's mean and spread. 1: the search's fit alone.
    repeats: int = 1
    deterministic: bool = False  # the backend's deterministic kernels (TF op determinism; slower; see benchmarks/)
    jit_compile: Any = "auto"  # "auto": XLA where there is an accelerator (pneumo.runtime.backend.jit_compile)
    verbose: int = 0


@dataclass
class EvaluationConfig:
    threshold: str = "sensitivity"  # sensitivity (at target_sensitivity) | youden
    target_sensitivity: float = 0.95  # used by threshold=sensitivity
    ensemble: int = 1  # the registered model averages the best N completed trials' models
    bootstrap: int = 1000  # patient-level resamples for the 95% CIs
    confidence: float = 0.95
    seed: int = 0
    heatmaps: int = 2  # test films per outcome (TP, TN, FP, FN) in evaluation/heatmaps.png; 0: none
    gallery: int = 24  # errors drawn in evaluation/error_gallery.png, most confident first (all in errors.csv)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: sqlite store under <root>/mlruns; MLFLOW_TRACKING_URI wins
    store: str = MISSING  # local store folder (sqlite db + artifacts)
    register: bool = True
    system_metrics: bool = True  # CPU, memory (and GPU, with pynvml) on each job run: MLflow's own sampler
    system_metrics_interval: float = 10.0  # seconds between samples


@dataclass
class DistributedConfig:
    """Keras Tuner's own distributed search: one chief (the oracle) and workers running its trials."""

    role: Optional[str] = None  # None: this process searches alone | chief | worker
    # chief: the interface the oracle listens on (0.0.0.0: all; None: 127.0.0.1).
    # worker: the chief's address; None: the one the chief published on its parent run.
    oracle_ip: Optional[str] = None
    oracle_port: Optional[int] = None  # chief: None = 8000; worker: None = as published
    worker_id: Optional[str] = None  # unique per worker; None: <host>-<pid>
    wait_s: float = 600.0  # worker: how long to wait for the chief's parent run to appear


@dataclass
class Config:
    data: DataConfig = MISSING
    model: Any = MISSING
    optimizer: OptimizerConfig = MISSING
    augmentation: AugmentationConfig = MISSING
    tuner: TunerConfig = MISSING
    trainer: TrainerConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: Paths = field(default_factory=Paths)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    seed: int = 42
    experiment: str = "pneumo"  # MLflow experiment = the sweep
    restart: bool = False  # discard this job's tuner state and search again
    rerun_of: Optional[str] = None  # set by `pneumo rerun RUN_ID`: this job reruns that run


GROUP_SCHEMAS = {
    "data": DataConfig, "optimizer": OptimizerConfig, "augmentation": AugmentationConfig,
    "tuner": TunerConfig, "trainer": TrainerConfig, "evaluation": EvaluationConfig,
    "tracking": TrackingConfig, "distributed": DistributedConfig,
}
MODEL_SCHEMAS = {c._target_: c for c in (CNNConfig, ResNetConfig, TransferConfig)}


def check(cfg) -> None:
    """Refuse keys the schemas do not know, also ones added with `+` (Hydra lets those in)."""
    from dataclasses import fields

    from pneumo.config.space import ConfigError

    size = cfg.trainer.image_size
    if not 16 <= size <= 1024:
        raise ConfigError(f"trainer.image_size: {size} px is out of range; use 16 to 1024 (e.g. 128)")
    if cfg.trainer.get("repeats", 1) < 1:
        raise ConfigError(f"trainer.repeats: {cfg.trainer.repeats}; use 1 (the search's fit alone) or more seeds")
    known_top = {f.name for f in fields(Config)} | {"hydra"}
    for key in cfg:
        if key not in known_top:
            raise ConfigError(f"{key}: unknown config key; known: {sorted(known_top - {'hydra'})}")
    for group, node in cfg.items():
        cls = GROUP_SCHEMAS.get(group) or (MODEL_SCHEMAS.get(node.get("_target_")) if group == "model" else None)
        if cls is None or node is None:
            continue
        allowed = {f.name for f in fields(cls)}
        for key in node:
            if key not in allowed:
                raise ConfigError(f"{group}.{key}: unknown key; {group} takes {sorted(allowed - {'_target_'})}")


def register() -> None:
    """Register schemas and resolvers; idempotent (tests call it repeatedly)."""
    if not OmegaConf.has_resolver("pneumo_root"):
        OmegaConf.register_new_resolver("pneumo_root", lambda: str(paths.ROOT))
    if not OmegaConf.has_resolver("pneumo_if_exists"):
        # a default that applies only on machines that have it (e.g. the dev machine's external test set)
        OmegaConf.register_new_resolver("pneumo_if_exists", lambda path: path if os.path.exists(path) else None)
    cs = ConfigStore.instance()
    cs.store(name="pneumo_config", node=Config)
    cs.store(group="data", name="schema", node=DataConfig)
    cs.store(group="model", name="cnn_schema", node=CNNConfig)
    cs.store(group="model", name="resnet_schema", node=ResNetConfig)
    cs.store(group="model", name="transfer_schema", node=TransferConfig)
    cs.store(group="optimizer", name="schema", node=OptimizerConfig)
    cs.store(group="augmentation", name="schema", node=AugmentationConfig)
    cs.store(group="tuner", name="schema", node=TunerConfig)
    cs.store(group="trainer", name="schema", node=TrainerConfig)
    cs.store(group="evaluation", name="schema", node=EvaluationConfig)
    cs.store(group="tracking", name="schema", node=TrackingConfig)
