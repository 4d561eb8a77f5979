"""Typed schemas for every config group (Hydra structured configs): types only.

Types live here, values in conf/*.yaml only: no field has a default (MISSING:
the YAML must set it; None on an Optional field means "not set", not a value),
so a value has one home and the two cannot disagree. Each YAML option names
its schema in its defaults list (`/schema/<group>@_here_`, models
`/schema/model/<name>@_here_`; stored outside the user-facing groups, so
`model=typo` lists only real options), and a misspelled key or a wrong type in
an override fails at composition, naming the key, before any data is loaded
or model trained. Fields that may hold a search space (see
`pneumo.config.space`) are typed Any.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, is_dataclass
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from pneumo.config import paths


@dataclass
class Paths:
    root: str = MISSING
    cache: str = MISSING


@dataclass
class DataConfig:
    source: str = MISSING  # synthetic | folder | kaggle
    root: Optional[str] = MISSING  # folder: the Kaggle-layout root; synthetic/kaggle: where it goes (None: cache)
    dataset: str = MISSING  # kaggle only: owner/name
    n_images: int = MISSING  # synthetic only
    image_px: int = MISSING  # synthetic only: side of the generated JPEGs, px
    normal_fraction: float = MISSING  # synthetic only
    seed: int = MISSING  # synthetic images and the split
    val_fraction: float = MISSING  # of train patients, carved patient-disjoint
    train_fraction: float = MISSING  # of the training patients kept after val is carved (1: all; a cheap fidelity)
    test_fraction: float = MISSING  # only when the source has no test/ and no test_root
    # a folder with NORMAL/ and PNEUMONIA/ (an external test set): the test split instead of the source's
    test_root: Optional[str] = None
    fold_kaggle_val: bool = MISSING  # a val/ folder joins train (Kaggle's 16 images are too few to select on)
    cache_dir: str = MISSING
    workers: int = MISSING  # decode processes; 0 = one per core


@dataclass
class CNNConfig:
    _target_: str = MISSING  # pneumo.model.builders.cnn
    filters: Any = MISSING
    blocks: Any = MISSING
    kernel_size: Any = MISSING
    dense_units: Any = MISSING
    dropout: Any = MISSING


@dataclass
class ResNetConfig:
    _target_: str = MISSING  # pneumo.model.builders.resnet
    filters: Any = MISSING
    stages: Any = MISSING
    blocks_per_stage: Any = MISSING
    dropout: Any = MISSING


@dataclass
class TransferConfig:
    _target_: str = MISSING  # pneumo.model.builders.transfer
    backbone: Any = MISSING  # a keras.applications name
    weights: Optional[str] = None  # None: random init; "imagenet" needs a download
    trainable: Any = MISSING  # False: frozen backbone, only the head trains (with pretrained weights)
    input_scale: float = MISSING  # backbone input = pixel/255 * scale + offset
    input_offset: float = MISSING
    dropout: Any = MISSING


@dataclass
class OptimizerConfig:
    _target_: str = MISSING  # a keras.optimizers class
    learning_rate: Any = MISSING
    # None: not passed (the optimizer's own default)
    rho: Any = None  # rmsprop
    momentum: Any = None  # rmsprop, sgd
    nesterov: Optional[bool] = None  # sgd
    beta_1: Any = None  # adam
    beta_2: Any = None  # adam
    weight_decay: Any = None
    use_ema: Optional[bool] = None  # keep an exponential moving average of the weights; validate and ship it
    ema_momentum: Any = None  # of that average, per step (Keras' default 0.99: ~100 steps)


@dataclass
class AugmentationConfig:
    _target_: str = MISSING  # pneumo.model.builders.augmentation
    flip: Any = MISSING  # horizontal
    rotation: Any = MISSING  # fraction of a full turn
    zoom: Any = MISSING  # fraction of the scale
    translation: Any = MISSING  # fraction of the side
    gamma: Any = MISSING  # largest |log gamma|
    contrast: Any = MISSING  # fraction of the spread about the film's mean
    brightness: Any = MISSING  # fraction of full scale


@dataclass
class TunerConfig:
    _target_: str = MISSING  # a keras_tuner tuner class
    objective: str = MISSING  # a names.py metric, maximised
    max_trials: Optional[int] = None  # None: the tuner's own (hyperband: set by max_epochs)
    executions_per_trial: int = MISSING
    seed: Optional[int] = None
    max_retries_per_trial: int = MISSING
    max_consecutive_failed_trials: int = MISSING
    max_model_size: Optional[int] = None  # parameters; a bigger model fails its trial (no OOM mid-search)
    start_with_defaults: bool = MISSING  # the first trial takes every space's default (random, bayesian)
    # bayesian
    num_initial_points: Optional[int] = None
    # hyperband
    max_epochs: Optional[int] = None
    factor: Optional[int] = None
    hyperband_iterations: Optional[int] = None


@dataclass
class EarlyStoppingConfig:
    monitor: str = MISSING  # a names.py metric
    patience: int = MISSING  # epochs
    start_from_epoch: int = MISSING  # epochs trained before it watches (Keras' warm-up)


@dataclass
class ReduceLRConfig:
    monitor: str = MISSING  # a names.py metric
    factor: float = MISSING
    patience: int = MISSING  # epochs
    min_lr: float = MISSING


@dataclass
class ClaheConfig:
    clip_limit: float = MISSING  # histogram clip, in multiples of a region's mean count (OpenCV's clipLimit)
    tiles: int = MISSING  # regions per side
    bins: int = MISSING  # gray levels of each region's histogram


@dataclass
class LRScheduleConfig:
    warmup_epochs: int = MISSING  # linear warm-up from start_factor x the optimizer's rate to it
    start_factor: float = MISSING
    end_factor: float = MISSING  # the cosine decay ends at end_factor x the rate, at the last epoch


@dataclass
class TrainerConfig:
    epochs: int = MISSING
    batch_size: int = MISSING
    image_size: int = MISSING  # px; images are decoded (and cached) at this size
    standardize: bool = MISSING  # each film to zero mean, unit variance inside the model (train and serve)
    class_weight: bool = MISSING  # weight the classes by inverse frequency
    label_smoothing: float = MISSING  # targets 0/1 become e/2 and 1 - e/2 in the loss (0: off)
    clahe: Optional[ClaheConfig] = MISSING  # local contrast equalisation inside the model (None: off)
    lr_schedule: Optional[LRScheduleConfig] = MISSING  # by epoch, instead of reduce_lr (None: off)
    early_stopping: Optional[EarlyStoppingConfig] = MISSING  # None: off
    reduce_lr: Optional[ReduceLRConfig] = MISSING  # None: off
    # A trial whose best val AUC is within chance_z standard errors of 0.5 fails (0: only AUC <= 0.5;
    # None: no check, for toy data too small for it)
    chance_z: Optional[float] = MISSING
    precision: str = MISSING  # float32 | mixed_float16 (GPU)
    # The best trial's hyperparameters trained with this many seeds (the search's own fit is the first):
    # the parent run gets each metric's mean and spread. 1: the search's fit alone.
    repeats: int = MISSING
    deterministic: bool = MISSING  # the backend's deterministic kernels (TF op determinism; slower; see benchmarks/)
    jit_compile: Any = MISSING  # "auto" (XLA where there is an accelerator: pneumo.runtime.backend.jit_compile) | bool
    run_eagerly: bool = MISSING  # Keras' debugging switch: each step as plain Python, no graph traced
    verbose: int = MISSING  # Keras fit verbosity


@dataclass
class TTAConfig:
    shift: float = MISSING  # the views shifted up, down, left and right by this fraction of the side (0: none)
    zoom: float = MISSING  # and one zoomed in by this fraction (0: none)


@dataclass
class EvaluationConfig:
    threshold: str = MISSING  # sensitivity (at target_sensitivity) | youden
    target_sensitivity: float = MISSING  # used by threshold=sensitivity
    ensemble: int = MISSING  # the registered model averages the best N completed trials' models
    bootstrap: int = MISSING  # patient-level resamples for the CIs
    confidence: float = MISSING  # of the CIs
    seed: int = MISSING
    heatmaps: int = MISSING  # test films per outcome (TP, TN, FP, FN) in evaluation/heatmaps.png; 0: none
    gallery: int = MISSING  # errors drawn in evaluation/error_gallery.png, most confident first (all in errors.csv)
    refer: Optional[float] = MISSING  # None: off; else the target accuracy of decided validation films (REFER band)
    ood_quantile: float = MISSING  # the OOD threshold: this quantile of validation films' scores (0.99: ~1% flagged)
    ood_sample: int = MISSING  # training films (at most) whose statistics the registered model carries
    tta: Optional[TTAConfig] = MISSING  # the registered model averages fixed views of each film (None: off)


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: sqlite store under <root>/mlruns; MLFLOW_TRACKING_URI wins
    store: str = MISSING  # local store folder (sqlite db + artifacts)
    register: bool = MISSING  # register each job's model in the MLflow Model Registry
    system_metrics: bool = MISSING  # CPU, memory (and GPU, with pynvml) on each job run: MLflow's own sampler
    system_metrics_interval: float = MISSING  # seconds between samples


@dataclass
class DistributedConfig:
    """Keras Tuner's own distributed search: one chief (the oracle) and workers running its trials."""

    role: Optional[str] = None  # None: this process searches alone | chief | worker
    # chief: the interface the oracle listens on (0.0.0.0: all; None: 127.0.0.1).
    # worker: the chief's address; None: the one the chief published on its parent run.
    oracle_ip: Optional[str] = None
    oracle_port: Optional[int] = None  # chief: None = 8000; worker: None = as published
    worker_id: Optional[str] = None  # unique per worker; None: <host>-<pid>
    wait_s: float = MISSING  # worker: how long to wait for the chief's parent run to appear, seconds


@dataclass
class Config:
    data: DataConfig = MISSING
    model: Any = MISSING  # CNNConfig | ResNetConfig | TransferConfig, as the option's defaults list says
    optimizer: OptimizerConfig = MISSING
    augmentation: AugmentationConfig = MISSING
    tuner: TunerConfig = MISSING
    trainer: TrainerConfig = MISSING
    evaluation: EvaluationConfig = MISSING
    tracking: TrackingConfig = MISSING
    paths: Paths = MISSING
    distributed: DistributedConfig = MISSING
    seed: int = MISSING
    experiment: str = MISSING  # MLflow experiment = the sweep
    restart: bool = MISSING  # discard this job's tuner state and search again
    rerun_of: Optional[str] = None  # set by `pneumo rerun RUN_ID`: this job reruns that run


# Where each schema is stored in Hydra's ConfigStore: under schema/, outside the groups a user picks
# options from. A conf/<group>/<option>.yaml names its schema first in its defaults list:
#   defaults: [/schema/<group>@_here_, _self_]        (models: /schema/model/<option>@_here_)
STORED = {
    "schema/data": DataConfig, "schema/optimizer": OptimizerConfig, "schema/augmentation": AugmentationConfig,
    "schema/tuner": TunerConfig, "schema/trainer": TrainerConfig, "schema/evaluation": EvaluationConfig,
    "schema/tracking": TrackingConfig,
    "schema/model/cnn": CNNConfig, "schema/model/resnet": ResNetConfig, "schema/model/transfer": TransferConfig,
}
GROUP_SCHEMAS = {
    "data": DataConfig, "optimizer": OptimizerConfig, "augmentation": AugmentationConfig,
    "tuner": TunerConfig, "trainer": TrainerConfig, "evaluation": EvaluationConfig,
    "tracking": TrackingConfig, "distributed": DistributedConfig, "paths": Paths,
}
MODEL_SCHEMAS = {"cnn": CNNConfig, "resnet": ResNetConfig, "transfer": TransferConfig}  # by option = builder name


def _schema_of(node, key, fallback):
    """The dataclass node[key] was typed by (a composed node keeps its schema's type), else `fallback`;
    None for a key that is unset, None or not a mapping."""
    if OmegaConf.is_missing(node, key) or not isinstance(node[key], DictConfig):
        return None
    typ = OmegaConf.get_type(node, key)
    return typ if typ is not None and is_dataclass(typ) else fallback


def _refuse_unknown(node, cls, where: str) -> None:
    from pneumo.config.errors import ConfigError

    allowed = {f.name for f in fields(cls)}
    for key in node:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key; {where} takes {sorted(allowed - {'_target_'})}")
    for f in fields(cls):
        sub = _schema_of(node, f.name, None)
        if sub is not None:
            _refuse_unknown(node[f.name], sub, f"{where}.{f.name}")


def check(cfg) -> None:
    """Refuse what composition lets through: values left unset (??? in the YAML, or `key=???`),
    keys the schemas do not know (also ones added with `+`, which Hydra lets in, nested ones too),
    and sizes out of range."""
    from pneumo.config.errors import ConfigError

    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not str(k).startswith("hydra."))
    if missing:
        raise ConfigError(f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not set: "
                          f"pass {missing[0]}=VALUE (the config leaves it ???)")
    size = cfg.trainer.image_size
    if not 16 <= size <= 1024:
        raise ConfigError(f"trainer.image_size: {size} px is out of range; use 16 to 1024 (e.g. 128)")
    if cfg.trainer.lr_schedule is not None and cfg.trainer.reduce_lr is not None:
        raise ConfigError("trainer.lr_schedule and trainer.reduce_lr both set the learning rate: set one to null")
    if cfg.trainer.repeats < 1:
        raise ConfigError(f"trainer.repeats: {cfg.trainer.repeats}; use 1 (the search's fit alone) or more seeds")
    known_top = {f.name for f in fields(Config)} | {"hydra"}
    for key in cfg:
        if key not in known_top:
            raise ConfigError(f"{key}: unknown config key; known: {sorted(known_top - {'hydra'})}")
    for group in cfg:
        fallback = GROUP_SCHEMAS.get(group)
        if group == "model" and not OmegaConf.is_missing(cfg, group) and isinstance(cfg.model, DictConfig):
            fallback = MODEL_SCHEMAS.get(str(cfg.model.get("_target_", "")).rsplit(".", 1)[-1])
        cls = _schema_of(cfg, group, fallback) if group != "hydra" else None
        if cls is not None:
            _refuse_unknown(cfg[group], cls, group)


def register() -> None:
    """Register schemas and resolvers; idempotent (tests call it repeatedly)."""
    if not OmegaConf.has_resolver("pneumo_root"):
        OmegaConf.register_new_resolver("pneumo_root", lambda: str(paths.ROOT))
    if not OmegaConf.has_resolver("pneumo_if_exists"):
        # a default that applies only on machines that have it (e.g. the dev machine's external test set)
        OmegaConf.register_new_resolver("pneumo_if_exists", lambda path: path if os.path.exists(path) else None)
    cs = ConfigStore.instance()
    cs.store(name="pneumo_config", node=Config)
    for where, node in STORED.items():
        group, _, name = where.rpartition("/")
        cs.store(group=group, name=name, node=node)
