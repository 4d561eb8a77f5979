"""The real conf/: every option composes and builds; typos and bad spaces fail early, by name."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from pneumo.config import paths, schema, space
from pneumo.record import redact, runs

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
        schema.check(cfg)  # sets every key its schema has (no ???), and no key it lacks


def sweep_grid():
    """(sweep, overrides of one grid point) for every point of every sweep in sweeps/."""
    import itertools

    from omegaconf import OmegaConf

    points = []
    for sweep in sorted(p.stem for p in paths.SWEEPS_DIR.glob("*.yaml")):
        with initialize_config_dir(config_dir=str(paths.SWEEPS_DIR), version_base="1.3"):
            params = compose(sweep, overrides=[f"hydra.searchpath=[{paths.CONF_DIR.as_uri()}]"],
                             return_hydra_config=True).hydra.sweeper.params
        grid = {k: str(v).split(",") for k, v in (OmegaConf.to_container(params) if params else {}).items()}
        points += [(sweep, [f"{k}={v}" for k, v in zip(grid, values)]) for values in itertools.product(*grid.values())]
    return points


def test_every_point_of_every_sweep_composes_and_passes_the_check():
    from omegaconf import OmegaConf

    points = sweep_grid()
    assert {s for s, _ in points} == {p.stem for p in paths.SWEEPS_DIR.glob("*.yaml")}
    for sweep, overrides in points:
        extra = ["data.root=/tmp/x"] if sweep.startswith("kermany") else []  # null off the dev machine
        with initialize_config_dir(config_dir=str(paths.SWEEPS_DIR), version_base="1.3"):
            cfg = compose(sweep, overrides=[*overrides, *extra, f"hydra.searchpath=[{paths.CONF_DIR.as_uri()}]"])
        schema.check(cfg)
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
        schema.check(cfg_with(*overrides))


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

    from pneumo.record.runs import job_key

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
    from pneumo.search.tuner import make_tuner

    cfg = cfg_with(f"tuner={tuner}")
    hm = HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32)
    t = make_tuner(cfg.tuner, hm, directory=tmp_path, project_name="p", overwrite=True,
                   client=None, experiment_id="0", parent_run_id="x")
    assert t.oracle.objective.name == "val_auc" and t.oracle.objective.direction == "max"
    assert "model.blocks" in t.oracle.hyperparameters.values


@pytest.mark.parametrize("override", ["+trainer.epoch=3", "+model.dropot=0.1", "+lr=0.1",
                                      "+trainer.early_stopping.patiense=3", "+paths.cahce=/tmp/x",
                                      "+distributed.rol=chief"])
def test_keys_added_with_plus_are_refused_before_training(override):
    cfg = cfg_with(override)
    with pytest.raises(space.ConfigError, match=override.lstrip("+").split("=")[0].split(".")[-1]):
        schema.check(cfg)
    schema.check(cfg_with())  # the real config passes


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
    flat = runs.flatten(cfg)
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
    from pneumo.search.tuner import make_tuner

    def tuner(*overrides, where="t"):
        cfg = cfg_with("model=resnet", *overrides)
        return make_tuner(cfg.tuner, HyperModel(cfg.model, cfg.optimizer, cfg.augmentation, 32),
                          directory=tmp_path / where, project_name="p", overwrite=True, client=None,
                          experiment_id="0", parent_run_id="x")

    t = tuner("tuner.start_with_defaults=true")
    defaults = t.oracle.get_space().values  # the seed's values: filters 32, stages 3, lr 1e-3 ...
    first, second = (t.oracle.create_trial(f"w{i}").hyperparameters.values for i in range(2))
    assert first == defaults and second != defaults
    plain = tuner(where="plain").oracle.create_trial("w0").hyperparameters.values
    assert plain != defaults  # without it, random search starts anywhere
    with pytest.raises(space.ConfigError, match="start_with_defaults"):
        tuner("tuner=hyperband", "tuner.start_with_defaults=true", where="hb")
