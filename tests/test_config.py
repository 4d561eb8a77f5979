"""The real conf/: every option composes and builds; typos and bad spaces fail early, by name."""

from __future__ import annotations

import copy
import functools
import re
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from pneumo.config import checks, paths, schema, space
from pneumo.record import params as record
from pneumo.record import redact

schema.register()
GROUPS = ["data", "model", "optimizer", "augmentation", "tuner", "trainer", "evaluation", "tracking"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (paths.CONF_DIR / group).glob("*.yaml"))


def cfg_with(*overrides: str):
    with initialize_config_dir(config_dir=str(paths.CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_composes(group):
    for option in options(group):
        extra = ["data.root=/tmp/x"] if (group, option) == ("data", "folder") else []
        cfg = cfg_with(f"{group}={option}", *extra)
        assert cfg[group] is not None
        checks.check(cfg)  # sets every key its schema has (no ???), and no key it lacks


def sweep_grid(sweeps=None):
    """(sweep, overrides of one grid point) for every point of every sweep in sweeps/; of a `seed` axis, its
    first and last values only (the seeds of a point compose alike; its range is checked on both ends)."""
    import itertools

    from omegaconf import OmegaConf

    points = []
    for sweep in sweeps or sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml")):
        with initialize_config_dir(config_dir=str(paths.SWEEPS_DIR), version_base="1.3"):
            params = compose(sweep, overrides=[f"hydra.searchpath=[{paths.CONF_DIR.as_uri()}]"],
                             return_hydra_config=True).hydra.sweeper.params
        grid = {k: str(v).split(",") for k, v in (OmegaConf.to_container(params) if params else {}).items()}
        grid = {k: sorted({v[0], v[-1]}) if k == "seed" else v for k, v in grid.items()}
        points += [(sweep, [f"{k}={v}" for k, v in zip(grid, values)]) for values in itertools.product(*grid.values())]
    return points


SWEEPS = sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml"))


@pytest.mark.parametrize("name", SWEEPS)
def test_every_point_of_every_sweep_composes_and_passes_the_check(name):
    from omegaconf import OmegaConf

    points = sweep_grid([name])
    assert points
    with initialize_config_dir(config_dir=str(paths.SWEEPS_DIR), version_base="1.3"):
        for sweep, overrides in points:
            extra = ["data.root=/tmp/x"] if sweep.startswith("kermany") else []  # null off the dev machine
            cfg = compose(sweep, overrides=[*overrides, *extra, f"hydra.searchpath=[{paths.CONF_DIR.as_uri()}]"])
            checks.check(cfg)
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize("group", GROUPS)
def test_an_unknown_option_lists_the_real_options_only(group):
    """The schemas are stored outside the groups a user picks from: `model=typo` lists cnn, resnet, transfer."""
    with pytest.raises(ConfigCompositionException) as e:
        cfg_with(f"{group}=typo")
    text = str(e.value)
    listed = text.split(f"Available options in '{group}':")[1].split("Config search path")[0].split()
    assert listed == options(group)
    if group == "model":
        assert listed == ["cnn", "resnet", "transfer"]


def test_the_schema_holds_types_only():
    """Values live in conf/ only: no schema field has a default but MISSING (the YAML sets it) or None
    ("not set", on an Optional or Any field); no default_factory either."""
    import dataclasses
    import inspect
    import typing

    from omegaconf import MISSING

    classes = [c for _, c in inspect.getmembers(schema, dataclasses.is_dataclass) if c.__module__ == schema.__name__]
    assert {schema.Config, schema.Paths, schema.DistributedConfig, schema.EarlyStoppingConfig,
            schema.ReduceLRConfig, schema.CNNConfig} <= set(classes)
    valued = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            optional = hints[f.name] is typing.Any or type(None) in typing.get_args(hints[f.name])
            if f.default_factory is not dataclasses.MISSING or not (
                    f.default is MISSING or (f.default is None and optional)):
                valued.append(f"{cls.__name__}.{f.name}")
    assert valued == []


def test_the_builders_take_their_values_from_the_config_only():
    """conf/ is the only home of a builder's values: no signature default (None, "not set", aside) to disagree
    with it (builders.transfer once said trainable=False where the config said true)."""
    import ast

    tree = ast.parse((paths.ROOT / "pneumo" / "model" / "builders.py").read_text())
    funcs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    valued = []
    for name in ("cnn", "resnet", "transfer", "augmentation", "build"):
        a = funcs[name].args
        params = a.posonlyargs + a.args
        pairs = list(zip(params[len(params) - len(a.defaults):], a.defaults)) + list(zip(a.kwonlyargs, a.kw_defaults))
        valued += [f"{name}({arg.arg}=...)" for arg, d in pairs
                   if d is not None and not (isinstance(d, ast.Constant) and d.value is None)]
    assert valued == []


@pytest.mark.parametrize("overrides, key", [
    (["data=folder"], "data.root"),  # folder.yaml leaves it ???
    (["trainer.verbose=???"], "trainer.verbose"),
    (["tuner.objective=???", "model.dropout=???"], "model.dropout, tuner.objective"),
])
def test_a_value_left_unset_fails_at_start_naming_the_key(overrides, key):
    with pytest.raises(space.ConfigError, match=f"^{key} (is|are) not set"):
        checks.check(cfg_with(*overrides))


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_model_and_optimizer_builds(model, optimizer):
    import keras_tuner

    from pneumo.model.builders import HyperModel

    cfg = cfg_with(f"model={model}", f"optimizer={optimizer}")
    built = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32).build(keras_tuner.HyperParameters())
    assert built.output_shape == (None, 1)
    assert built.optimizer.__class__.__name__.lower() == optimizer


@pytest.mark.parametrize("eager", [False, True])
def test_trainer_run_eagerly_reaches_keras_compile(eager):
    """The named-sweep tests run their toy jobs eagerly (no graph traced): the switch must be Keras' own."""
    import keras_tuner

    from pneumo.model.builders import HyperModel

    cfg = cfg_with(f"trainer.run_eagerly={str(eager).lower()}")
    built = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32,
                       run_eagerly=cfg.trainer.run_eagerly).build(keras_tuner.HyperParameters())
    assert built.run_eagerly is eager


def test_a_jobs_identity_ignores_how_it_is_driven_not_what_it_trains():
    """A job keeps its key (resume: "already finished") whether run eagerly or traced, and wherever its
    store is; another number of epochs is another job."""
    from omegaconf import OmegaConf

    from pneumo.record.params import job_key

    def key(*overrides):
        return job_key(OmegaConf.to_container(cfg_with(*overrides), resolve=False), "data-digest")

    assert key() == key("trainer.run_eagerly=true") == key("tracking.store=/elsewhere")
    assert key() != key("trainer.epochs=11")


@pytest.mark.parametrize("augmentation", options("augmentation"))
def test_augmentation_is_active_only_in_training(augmentation):
    import keras_tuner
    import numpy as np

    from pneumo.model.builders import HyperModel

    cfg = cfg_with(f"augmentation={augmentation}")
    model = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32).build(keras_tuner.HyperParameters())
    x = np.random.default_rng(0).integers(0, 255, (4, 32, 32, 1), dtype=np.uint8)
    names = [layer.name for layer in model.layers]
    assert ("augmentation" in names) == (augmentation != "none")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))


def test_seed_cnn_defaults_reproduce_the_seed():
    import keras_tuner

    from pneumo.model.builders import HyperModel

    cfg = cfg_with()
    model = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 128).build(keras_tuner.HyperParameters())
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [32, 64, 128]
    assert model.optimizer.__class__.__name__ == "RMSprop"
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-3)


@pytest.mark.parametrize("tuner", options("tuner"))
def test_every_tuner_builds_a_tracked_search(tuner, tmp_path):
    from pneumo.model.builders import HyperModel
    from pneumo.search.tuner import TunerState, make_tuner

    cfg = cfg_with(f"tuner={tuner}")
    hm = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32)
    t = make_tuner(cfg.tuner, hm, TunerState(tmp_path, "p", overwrite=True))
    assert t.oracle.objective.name == "val_auc" and t.oracle.objective.direction == "max"
    assert "model.blocks" in t.oracle.hyperparameters.values


@pytest.mark.parametrize("tuner", options("tuner"))
def test_the_search_is_the_one_its_tuner_class_runs_and_resumes_its_directory(tuner, tmp_path):
    """pneumo builds the oracle that `tuner._target_`'s class builds (pneumo.search.oracle): a tuner directory
    that class wrote (pneumo ran the class itself before) resumes where it stopped, picking the same next trial."""
    import shutil

    import keras_tuner
    from hydra.utils import get_class

    from pneumo.model.builders import HyperModel
    from pneumo.search.tuner import TunerState, make_tuner

    cfg = cfg_with(f"tuner={tuner}", "model.blocks={int:[2,4]}", "model.dropout={float:[0.1,0.5]}")
    hm = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32)
    kwargs = {k: v for k, v in cfg.tuner.items() if v is not None and k not in ("_target_", "objective",
                                                                                   "start_with_defaults")}
    before = get_class(cfg.tuner._target_)(hypermodel=hm, objective=keras_tuner.Objective("val_auc", "max"),
                                           directory=str(tmp_path / "a"), project_name="p", **kwargs)
    first = before.oracle.create_trial("tuner0")
    before.oracle.update_trial(first.trial_id, {"val_auc": 0.7})
    first.status = "COMPLETED"
    before.oracle.end_trial(first)
    before.save()
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    expected = before.oracle.create_trial("tuner0").hyperparameters.values

    t = make_tuner(cfg.tuner, hm, TunerState(tmp_path / "b", "p", overwrite=False))
    assert type(t.oracle) is type(before.oracle) and t.oracle.max_trials == before.oracle.max_trials
    assert list(t.oracle.trials) == [first.trial_id] and str(t.oracle.trials[first.trial_id].status) == "COMPLETED"
    assert t.oracle.create_trial("tuner0").hyperparameters.values == expected


@pytest.mark.parametrize("override", ["+trainer.epoch=3", "+model.dropot=0.1", "+lr=0.1",
                                      "+trainer.early_stopping.patiense=3", "+paths.cahce=/tmp/x",
                                      "+distributed.rol=chief"])
def test_keys_added_with_plus_are_refused_before_training(override):
    cfg = cfg_with(override)
    with pytest.raises(space.ConfigError, match=override.lstrip("+").split("=")[0].split(".")[-1]):
        checks.check(cfg)
    checks.check(cfg_with())  # the real config passes


@pytest.mark.parametrize("override, key", [
    ("trainer.epoch=3", "epoch"),
    ("model.dropot=0.1", "dropot"),
])
def test_misspelled_key_fails_naming_it(override, key):
    with pytest.raises((ConfigCompositionException, ConfigKeyError)) as e:
        cfg_with(override)
    assert key in str(e.value) + str(e.value.__cause__)


def test_wrong_type_and_unknown_option_fail():
    with pytest.raises((ConfigCompositionException, ValidationError)) as e:
        cfg_with("trainer.epochs=ten")
    assert "epochs" in str(e.value) + str(e.value.__cause__)
    with pytest.raises(ConfigCompositionException) as e:
        cfg_with("model=vgg99")
    assert "vgg99" in str(e.value)


@pytest.mark.parametrize("override, message", [
    ("model.blocks={int:[4,2]}", "model.blocks: int range has min 4 > max 2"),
    ("model.dense_units={choice:[]}", "model.dense_units: choice needs a non-empty list"),
    ("optimizer.learning_rate={float:[0,0.1],log:true}", "optimizer.learning_rate: log sampling needs min > 0"),
])
def test_bad_search_space_fails_before_training(override, message):
    from pneumo.model.builders import HyperModel

    cfg = cfg_with(override)
    with pytest.raises(space.ConfigError, match=message.replace("[", r"\[")):
        HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32)


def test_params_are_flat_and_secrets_redacted(monkeypatch):
    monkeypatch.setenv("KAGGLE_KEY", "s3cr3t-kaggle-value")
    cfg = {"model": {"blocks": {"int": [2, 4]}, "dropout": 0.5},
           "api_token": "abc", "note": "uses s3cr3t-kaggle-value"}
    flat = record.flatten(cfg)
    assert flat["model.dropout"] == "0.5"
    assert flat["model.blocks"] == '{"int": [2, 4]}'
    assert flat["api_token"] == redact.REDACTED
    assert "s3cr3t" not in flat["note"]
    assert redact.redact_overrides(["+hub_token=xyz", "model=cnn"]) == ["+hub_token=***", "model=cnn"]


def test_help_lists_subcommands_without_importing_tensorflow():
    code = ("import sys; from pneumo.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print('TF' if 'tensorflow' in sys.modules or 'keras' in sys.modules else 'NO-TF')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    for command in ("train", "sweep", "data", "compare", "promote", "predict", "ui"):
        assert command in out
    assert out.strip().endswith("NO-TF")


def test_every_schema_field_is_read_by_the_code():
    """A key nothing reads is a promise nothing keeps (trainer.checkpoint once was one)."""
    import dataclasses
    import re

    from pneumo.config import paths, schema

    code = "\n".join(p.read_text() for p in (paths.ROOT / "pneumo").rglob("*.py") if p.name != "schema.py")
    # groups handed whole to what they configure (a builder's, optimizer's or tuner's keyword arguments)
    wholesale = {schema.CNNConfig, schema.ResNetConfig, schema.TransferConfig, schema.OptimizerConfig,
                 schema.AugmentationConfig, schema.TunerConfig}
    unread = []
    for cls in {*schema.GROUP_SCHEMAS.values(), schema.Config, schema.Paths, schema.EarlyStoppingConfig,
                schema.ReduceLRConfig} - wholesale:
        for f in dataclasses.fields(cls):
            if not re.search(rf"(\.{f.name}\b|\[\"{f.name}\"\]|get\(\"{f.name}\"|\b{f.name}=)", code):
                unread.append(f"{cls.__name__}.{f.name}")
    assert unread == []


def test_a_search_can_start_from_the_defaults(tmp_path):
    from pneumo.model.builders import HyperModel
    from pneumo.search.tuner import TunerState, make_tuner

    def tuner(*overrides, where="t"):
        cfg = cfg_with("model=resnet", *overrides)
        return make_tuner(cfg.tuner, HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32),
                          TunerState(tmp_path / where, "p", overwrite=True))

    t = tuner("tuner.start_with_defaults=true")
    defaults = t.oracle.get_space().values  # the seed's values: filters 32, stages 3, lr 1e-3 ...
    first, second = (t.oracle.create_trial(f"w{i}").hyperparameters.values for i in range(2))
    assert first == defaults and second != defaults
    plain = tuner(where="plain").oracle.create_trial("w0").hyperparameters.values
    assert plain != defaults  # without it, random search starts anywhere
    with pytest.raises(space.ConfigError, match="start_with_defaults"):
        tuner("tuner=hyperband", "tuner.start_with_defaults=true", where="hb")


# -- every number's range, pinned at its edges ------------------------------------------------------
# (options, key, the edge value just inside, the first value just outside). Each row is a line drawn in
# pneumo/config/schema.py (`within`) or pneumo/config/checks.py; moving the line, or reading another
# number, fails a row. For an open end "just inside" is a hair inside it.
CLAHE, COSINE, TTA = "+lever=clahe", "+lever=cosine", "+lever=tta"  # these keys are null (off) unless a lever sets them
RANGES = [
    ([], "seed", 0, -1), ([], "seed", 4294967295, 4294967296),
    ([], "data.n_images", 8, 7), ([], "data.image_px", 16, 15), ([], "data.image_px", 4096, 4097),
    ([], "data.normal_fraction", 0.001, 0.0), ([], "data.normal_fraction", 0.999, 1.0),
    ([], "data.seed", 0, -1), ([], "data.val_fraction", 0.001, 0.0), ([], "data.val_fraction", 0.849, 1.0),
    ([], "data.test_fraction", 0.001, 0.0), ([], "data.test_fraction", 0.849, 1.0), ([], "data.workers", 0, -1),
    ([], "model.filters", 1, 0), ([], "model.blocks", 1, 0), ([], "model.kernel_size", 1, 0),
    ([], "model.dense_units", 1, 0), ([], "model.dropout", 0.0, -0.001), ([], "model.dropout", 0.999, 1.0),
    (["model=resnet"], "model.filters", 1, 0), (["model=resnet"], "model.stages", 1, 0),
    (["model=resnet"], "model.blocks_per_stage", 1, 0), (["model=resnet"], "model.dropout", 0.999, 1.0),
    (["model=transfer"], "model.dropout", 0.0, -0.001), (["model=transfer"], "model.input_scale", -1e30, "-inf"),
    (["model=transfer"], "model.input_offset", 1e30, "inf"),
    ([], "optimizer.learning_rate", 1e-12, 0.0), ([], "optimizer.learning_rate", 1e30, "inf"),
    ([], "optimizer.rho", 0.0, -0.001), ([], "optimizer.rho", 0.999, 1.0),
    (["optimizer=sgd"], "optimizer.momentum", 0.999, 1.0), (["optimizer=adam"], "optimizer.beta_1", 0.999, 1.0),
    (["optimizer=adam"], "optimizer.beta_2", 0.0, -0.001), ([], "optimizer.weight_decay", 0.0, -0.001),
    ([], "augmentation.rotation", 0.5, 0.501), ([], "augmentation.rotation", 0.0, -0.001),
    ([], "augmentation.zoom", 0.999, 1.0), ([], "augmentation.translation", 1.0, 1.001),
    ([], "augmentation.gamma", 0.0, -0.001), ([], "augmentation.contrast", 1.0, 1.001),
    ([], "augmentation.brightness", 1.0, 1.001),
    ([], "tuner.max_trials", 1, 0), ([], "tuner.executions_per_trial", 1, 0), ([], "tuner.seed", 0, -1),
    ([], "tuner.max_retries_per_trial", 0, -1), ([], "tuner.max_consecutive_failed_trials", 1, 0),
    ([], "tuner.max_model_size", 1, 0), (["tuner=bayesian"], "tuner.num_initial_points", 1, 0),
    (["tuner=hyperband"], "tuner.max_epochs", 1, 0), (["tuner=hyperband"], "tuner.factor", 2, 1),
    (["tuner=hyperband"], "tuner.hyperband_iterations", 1, 0),
    ([], "trainer.epochs", 1, 0), ([], "trainer.batch_size", 1, 0),
    ([], "trainer.image_size", 16, 15), ([], "trainer.image_size", 1024, 1025),
    ([], "trainer.early_stopping.patience", 0, -1), ([], "trainer.early_stopping.start_from_epoch", 0, -1),
    ([], "trainer.reduce_lr.factor", 0.999, 1.0), ([], "trainer.reduce_lr.factor", 0.001, 0.0),
    ([], "trainer.reduce_lr.patience", 0, -1), ([], "trainer.reduce_lr.min_lr", 0.0, -1e-12),
    ([], "trainer.chance_z", 0.0, -0.001), ([], "trainer.chance_z", 1e30, "nan"), ([], "trainer.repeats", 1, 0),
    ([], "trainer.verbose", 0, -1), ([], "trainer.verbose", 2, 3),
    ([], "evaluation.target_sensitivity", 1.0, 1.001), ([], "evaluation.target_sensitivity", 0.001, 0.0),
    ([], "evaluation.ensemble", 1, 0), ([], "evaluation.bootstrap", 40, 0),
    ([], "evaluation.confidence", 0.001, 0.0), ([], "evaluation.confidence", 0.99, 1.0), ([], "evaluation.seed", 0, -1),
    ([], "evaluation.heatmaps", 0, -1), ([], "evaluation.gallery", 0, -1),
    ([], "evaluation.refer", 1.0, 1.001), ([], "evaluation.refer", 0.501, 0.5),
    ([], "evaluation.ood_quantile", 1.0, 1.001), ([], "evaluation.ood_quantile", 0.501, 0.5),
    ([], "evaluation.ood_sample", 0, -1),
    ([], "tracking.system_metrics_interval", 0.001, 0.0),
    ([], "distributed.oracle_port", 1, 0), ([], "distributed.oracle_port", 65535, 65536),
    ([], "distributed.wait_s", 0.0, -0.001),
    ([], "data.train_fraction", 0.001, 0.0), ([], "data.train_fraction", 1.0, 1.001),
    ([], "optimizer.ema_momentum", 0.0, -0.001), ([], "optimizer.ema_momentum", 0.999, 1.0),
    ([], "trainer.label_smoothing", 0.0, -0.001), ([], "trainer.label_smoothing", 0.999, 1.0),
    ([CLAHE], "trainer.clahe.clip_limit", 1e-9, 0.0), ([CLAHE], "trainer.clahe.tiles", 1, 0),
    ([CLAHE], "trainer.clahe.tiles", 64, 65), ([CLAHE], "trainer.clahe.bins", 2, 1), ([CLAHE], "trainer.clahe.bins", 256, 257),
    ([COSINE], "trainer.lr_schedule.warmup_epochs", 0, -1),
    ([COSINE], "trainer.lr_schedule.start_factor", 1.0, 1.001),
    ([COSINE], "trainer.lr_schedule.start_factor", 0.001, 0.0),
    ([COSINE], "trainer.lr_schedule.end_factor", 0.0, -0.001),
    ([COSINE], "trainer.lr_schedule.end_factor", 1.0, 1.001),
    ([TTA], "evaluation.tta.shift", 0.0, -0.001), ([TTA], "evaluation.tta.shift", 0.499, 0.5),
    ([TTA], "evaluation.tta.zoom", 0.0, -0.001), ([TTA], "evaluation.tta.zoom", 0.999, 1.0),
]


def ranged_keys() -> set[str]:
    """Every dotted key whose schema field declares a range (`within`)."""
    import dataclasses

    from pneumo.config import ranges

    def walk(cls, prefix):
        for f in dataclasses.fields(cls):
            if ranges.of(f) is not None:
                yield prefix + f.name
            nested = {(schema.TrainerConfig, "early_stopping"): schema.EarlyStoppingConfig,
                      (schema.TrainerConfig, "reduce_lr"): schema.ReduceLRConfig,
                      (schema.TrainerConfig, "clahe"): schema.ClaheConfig,
                      (schema.TrainerConfig, "lr_schedule"): schema.LRScheduleConfig,
                      (schema.EvaluationConfig, "tta"): schema.TTAConfig}
            if (cls, f.name) in nested:
                yield from walk(nested[(cls, f.name)], f"{prefix}{f.name}.")

    keys = set(walk(schema.Config, ""))
    for group, cls in [*schema.GROUP_SCHEMAS.items(), *(("model", c) for c in schema.MODEL_SCHEMAS.values())]:
        keys |= set(walk(cls, f"{group}."))
    return keys


def test_every_ranged_key_is_pinned_at_its_edges():
    assert {key for _, key, _, _ in RANGES} == ranged_keys()


@functools.cache
def composed(*overrides: str):
    return cfg_with(*overrides)


def with_value(options: list[str], key: str, value):
    """The composed config of `options` with key=value set as an override sets it (typed, validated);
    composed once per option list: composing ~90 configs takes minutes on a loaded 2-core machine."""
    from omegaconf import OmegaConf

    cfg = copy.deepcopy(composed(*options))
    OmegaConf.update(cfg, key, float(value) if value in ("inf", "-inf", "nan") else value, merge=False)
    return cfg


@pytest.mark.parametrize("options, key, inside, outside", RANGES,
                         ids=[f"{' '.join(o)} {k}={i}|{x}".strip() for o, k, i, x in RANGES])
def test_a_number_just_outside_its_range_fails_naming_the_key_and_the_edge_passes(options, key, inside, outside):
    if key == "evaluation.confidence":
        options = [*options, "evaluation.bootstrap=1000"]  # 0.99 needs 200 draws
    checks.check(with_value(options, key, inside))
    with pytest.raises(space.ConfigError) as e:
        checks.check(with_value(options, key, outside))
    assert str(e.value).startswith(f"{key}: {outside}") and "out of range" in str(e.value), str(e.value)


def test_an_override_just_outside_a_range_fails_at_composition_speed():
    """The same check on a real override (the rows above set values on a composed config)."""
    checks.check(cfg_with("trainer.batch_size=1", "optimizer.learning_rate=1e-12"))
    for override, message in [("trainer.batch_size=0", "trainer.batch_size: 0 is out of range; use an integer >= 1"),
                              ("optimizer.learning_rate=inf", "optimizer.learning_rate: inf is out of range; "
                                                              "use a number > 0")]:
        with pytest.raises(space.ConfigError, match=f"^{re.escape(message)}$"):
            checks.check(cfg_with(override))


@pytest.mark.parametrize("overrides, message", [
    (["model.dropout={float:[0.2,1.0]}"], "model.dropout: the space {float: [0.2, 1.0], step: 0.1, default: 0.5} "
                                          "can pick 1.0, out of range; every value must be a number >= 0 and < 1"),
    (["model.filters={choice:[0,32]}"], "model.filters: the space {choice: [0, 32], default: 32} can pick 0"),
    (["optimizer.learning_rate={float:[0.0,0.01],log:false}"], "optimizer.learning_rate: the space"),
    (["model.blocks=2.5"], "model.blocks: 2.5 is out of range; use an integer >= 1"),
    (["model.filters={choice:[32,2.5]}"], "model.filters: the space {choice: [32, 2.5], default: 32} can pick 2.5"),
    (["model.dropout={step:0}"], "model.dropout: step 0 in {float: [0.2, 0.6], step: 0, default: 0.5}; use a step > 0"),
    (["model.dropout=high"], "model.dropout: 'high' is out of range; use a number >= 0 and < 1"),
])
def test_every_value_a_space_can_pick_is_in_range(overrides, message):
    """A space is checked at its ends, choices and default: the values a trial can get."""
    with pytest.raises(space.ConfigError) as e:
        checks.check(cfg_with(*overrides))
    assert str(e.value).startswith(message), str(e.value)
    checks.check(cfg_with("model.dropout={float:[0.0,0.9]}", "model.filters={choice:[1,32]}"))  # inside: passes


@pytest.mark.parametrize("overrides, message", [
    (["data.val_fraction=0.85", "data.test_fraction=0.15"], "data.val_fraction + data.test_fraction = 0.85 + 0.15"),
    (["evaluation.bootstrap=39"], "evaluation.bootstrap: 39 resamples cannot give a 0.95 interval; use at least 40"),
    (["evaluation.bootstrap=199", "evaluation.confidence=0.99"], "evaluation.bootstrap: 199 resamples cannot give "
                                                                 "a 0.99 interval; use at least 200"),
])
def test_keys_that_cannot_work_together_fail_naming_both(overrides, message):
    with pytest.raises(space.ConfigError) as e:
        checks.check(cfg_with(*overrides))
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("overrides", [
    ["data.val_fraction=0.84", "data.test_fraction=0.15"], ["evaluation.bootstrap=40"],
    ["evaluation.bootstrap=200", "evaluation.confidence=0.99"],
    # fewer completed trials than the ensemble asks for: the members there are (the run's ensemble tag lists them)
    ["evaluation.ensemble=3", "tuner.max_trials=1"],
])
def test_keys_just_inside_their_combined_lines_pass(overrides):
    checks.check(cfg_with(*overrides))


@pytest.mark.parametrize("interval, shown", [
    ("[1, inf)", "a number >= 1"), ("(0, inf)", "a number > 0"), ("(0, 1)", "a number > 0 and < 1"),
    ("[0, 1)", "a number >= 0 and < 1"), ("(0.5, 1]", "a number > 0.5 and <= 1"), ("[16, 1024]", "a number from 16 to 1024"),
    ("(-inf, inf)", "any finite number"), ("[0, inf]", "a number >= 0"),  # infinity is never in range
])
def test_a_range_reads_as_it_is_written(interval, shown):
    from pneumo.config import ranges

    assert str(ranges.parse(interval)) == shown
    assert str(ranges.parse(interval, whole=True)).replace("an integer", "a number").replace(" (a number)", "") == shown
    for value in (float("nan"), float("inf"), True, "1", None):
        assert value not in ranges.parse(interval)
    with pytest.raises(ValueError):
        ranges.parse(interval.replace(",", ";"))


def run_refused(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, float, set[str]]:
    """`pneumo ARGS` in a fresh interpreter: (the process, its CPU seconds, the top-level modules it imported)."""
    import resource

    from helpers import clean_env, isolate

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pneumo", *args, *isolate(tmp_path)],
                          cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    imported = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:")}
    return proc, cpu, imported


@pytest.mark.parametrize("multirun", [False, True])
def test_a_bad_number_exits_2_in_seconds_with_one_line_and_records_nothing(tmp_path, multirun):
    """Issue 28: `trainer.batch_size=0` trained for a minute with Keras' 32 and registered a version that
    said 0. Now: exit 2 before Keras is even imported (CPU seconds, not wall time: the machine is shared),
    one line naming the key, the value and the range, and no store, run, output folder or cache. In a
    multirun the bad job is the second: the good one never starts."""
    from helpers import TOY

    args = ["train", "-m", *TOY, "trainer.batch_size=16,0"] if multirun else ["train", "trainer.batch_size=0"]
    proc, cpu, imported = run_refused(tmp_path, *args)
    assert proc.returncode == 2, proc.stderr[-3000:]
    said = [line for line in proc.stderr.splitlines() if line.startswith("pneumo: ")]
    job = [*("trainer.batch_size=0" if o.startswith("trainer.batch_size=") else o for o in TOY),
           f"paths.cache={tmp_path}/cache", f"tracking.store={tmp_path}/mlruns"]  # a key keeps its first place
    where = f" [job #1 of 2: {' '.join(job)}; no job was started]" if multirun else ""
    assert said == [f"pneumo: trainer.batch_size: 0 is out of range; use an integer >= 1{where}"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Error executing job" not in proc.stderr
    assert cpu < 10, f"{cpu:.1f} CPU seconds"
    assert not {"keras", "tensorflow", "jax", "torch"} & imported
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no mlruns/, outputs/, multirun/ or cache/


def test_a_config_hydra_cannot_compose_exits_2(tmp_path):
    proc, _, _ = run_refused(tmp_path, "train", "trainer.epoch=3")
    assert proc.returncode == 2 and "Key 'epoch' not in 'TrainerConfig'" in proc.stderr, proc.stderr[-3000:]
