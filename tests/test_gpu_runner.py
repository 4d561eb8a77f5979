"""The GPU runner (benchmarks/gpu/) keeps working while no GPU is lent: its kit is built from this
checkout and its steps run in the CPU quick mode, on JAX without TensorFlow, as they would on the
lent machine but tiny. A GPU lent later is then not spent on import errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from pneumo.config import paths
from pneumo.record import names

from helpers import clean_env, require

GPU = paths.ROOT / "benchmarks" / "gpu"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"gpu_{name}", GPU / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", sorted(p.name for p in GPU.glob("*.py")))
def test_every_runner_script_imports_without_running(script):
    """Importing runs nothing (decode workers re-import a script) and each script has a main."""
    module = _module(script.removesuffix(".py"))
    assert callable(getattr(module, "main", None) or getattr(module, "strip", None))


@pytest.mark.parametrize("script", sorted(p.name for p in GPU.glob("*.sh")))
def test_every_runner_shell_script_parses(script):
    subprocess.run(["bash", "-n", str(GPU / script)], check=True)


def test_the_mlflow_wheel_loses_its_ui_bundle_and_nothing_else(tmp_path):
    strip = _module("strip_mlflow_ui")
    kept = {"mlflow/__init__.py": b"VERSION = '3.0'\n", "mlflow/server/json_utils.py": b"x = 1\n"}
    wheel = tmp_path / "in" / "mlflow-3.0-py3-none-any.whl"
    wheel.parent.mkdir()
    record = "".join(f"{n},sha256=x,1\n" for n in [*kept, "mlflow/server/js/build/index.html"])
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in kept.items():
            z.writestr(name, data)
        z.writestr("mlflow/server/js/build/index.html", b"<html>")
        z.writestr("mlflow-3.0.dist-info/RECORD", record)
    out = strip.strip(wheel, tmp_path / "out")
    with zipfile.ZipFile(out) as z:
        assert {n: z.read(n) for n in kept} == kept  # byte for byte, json_utils.py just outside the cut
        assert "mlflow/server/js/build/index.html" not in z.namelist()
        assert "server/js/" not in z.read("mlflow-3.0.dist-info/RECORD").decode()
    assert out.name == wheel.name


def test_the_wheel_plan_walks_pneumos_dependencies_less_the_gpu_image():
    """This environment's versions of pneumo's closure: Keras, Keras Tuner, MLflow and Hydra travel;
    the image's numpy and JAX, the TensorFlow extra and skip.txt's server packages do not."""
    plan = _module("wheel_plan")
    image, skip = plan.listing(GPU / "image-packages.txt"), plan.listing(GPU / "skip.txt")
    carry, missing = plan.plan(["keras>=3.3", "keras-tuner", "mlflow", "hydra-core", "numpy"], image, skip)
    assert missing == []
    assert {"keras", "keras-tuner", "mlflow", "hydra-core", "omegaconf", "sqlalchemy", "opentelemetry-api"} <= set(carry)
    assert not {"numpy", "jax", "jaxlib", "tensorflow", "flask", "gunicorn", "mlflow-skinny"} & set(carry)
    from importlib.metadata import version

    assert carry["keras"] == version("keras")


@pytest.mark.parametrize("image_has, carried", [("3.3.0", False), ("3.2.9", True), (None, False)])
def test_an_image_package_below_a_pin_is_carried(image_has, carried):
    """The image's own version is used unless the version recorded for it misses the requirement."""
    plan = _module("wheel_plan")
    carry, _ = plan.plan(["keras>=3.3"], {"keras": image_has}, {})
    assert ("keras" in carry) is carried


def test_pack_leaves_out_the_largest_logged_models_until_the_store_fits(tmp_path):
    store = tmp_path / "mlruns"
    run = store / "artifacts" / "1" / "runs" / "r1"
    run.mkdir(parents=True)
    (store / "mlflow.db").write_bytes(b"db")
    (run / "metrics.json").write_text("{}")
    for model, mib in (("m-big", 3), ("m-small", 1)):
        folder = store / "artifacts" / "1" / "models" / model / "artifacts"
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes(os.urandom(mib << 20))  # random: gzip cannot shrink it

    def packed(limit_mib: float) -> list[str]:
        out = tmp_path / f"out-{limit_mib}"
        argv = [sys.executable, str(GPU / "pack.py"), str(store), str(out), "--max-total-mib", str(limit_mib)]
        if subprocess.run(argv, capture_output=True).returncode:
            return []
        with tarfile.open(out / "mlruns.tgz") as t:
            return t.getnames()

    everything = packed(4.5)
    assert "mlruns/mlflow.db" in everything and any("m-big" in n for n in everything)
    without_big = packed(3.5)  # 4 MiB of models: the big one goes, the small one stays
    assert not any("m-big" in n for n in without_big) and any("m-small" in n for n in without_big)
    assert "mlruns/artifacts/1/runs/r1/metrics.json" in without_big and "mlruns/PACKED.txt" in without_big
    assert packed(0.0001) == []  # not even the db fits: no archive, exit 1


@pytest.mark.parametrize("command, flagged", [
    ("mkdir -p ignored && touch ignored/file", None),  # git ignores it: the store, caches, .gpu-kit are so
    ("touch stray.txt", "stray.txt"),                  # in the checkout, not ignored
    ("touch README.md", "README.md"),                  # a file of the checkout changed
    ('touch "$OUTSIDE/file"', "outside/file"),         # under CHECK_DIRS (tmp_path, around all the others)
    ('touch "$OUT/file" "$KIT_TMP/file"', None),       # where the run may write
])
def test_the_check_step_flags_what_the_run_wrote_where_it_should_not(tmp_path, command, flagged):
    """run.sh's check, in a copy of the checkout without .git (it may not travel): the run's writes,
    inside and just outside what is allowed."""
    checkout = tmp_path / "checkout"
    (checkout / "benchmarks" / "gpu").mkdir(parents=True)
    (checkout / "benchmarks" / "gpu" / "run.sh").write_text((GPU / "run.sh").read_text())
    (checkout / ".gitignore").write_text("ignored/\n")
    (checkout / "README.md").write_text("x\n")
    (tmp_path / "outside").mkdir()
    env = clean_env({"OUT": str(tmp_path / "out"), "KIT_TMP": str(tmp_path / "tmp"), "PY": sys.executable,
                     "STEPS": "cmd,check", "CMD": command, "CHECK_DIRS": str(tmp_path),
                     "OUTSIDE": str(tmp_path / "outside")})
    ran = subprocess.run(["bash", str(checkout / "benchmarks" / "gpu" / "run.sh")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    log = (tmp_path / "out" / "run.log").read_text()
    assert "step cmd: exit 0" in log, log
    if flagged is None:
        assert ran.returncode == 0 and "step check: exit 0" in log, log
    else:
        assert ran.returncode == 1 and "step check: exit 1" in log and flagged in log.split("step check: start")[1], log


@pytest.mark.slow
@pytest.mark.ci
def test_quick_mode_runs_the_gpu_runner_end_to_end_on_jax_without_tensorflow(tmp_path):
    """make_kit.sh (the wheel plan only, synthetic data), then run.sh QUICK=1 with a JAX-only venv:
    project, bench, the kermany-screen sweep at one job, compare, a command of one's own, pack and
    the write check, as on the GPU machine. The returned store opens here, as benchmarks/gpu/README.md
    says."""
    venv = os.environ.get("PNEUMO_JAX_VENV")
    require(bool(venv) and Path(venv, "bin", "python").is_file(),
            "PNEUMO_JAX_VENV does not name a venv with pneumo's jax extra alone (.ci/run makes one)")
    python = Path(venv, "bin", "python")
    assert subprocess.run([python, "-c", "import tensorflow"], capture_output=True).returncode != 0, \
        f"tensorflow is importable in {venv}: the GPU machine has none"
    env = clean_env({"KERAS_BACKEND": None, "PYTHONPATH": None})
    kit = tmp_path / "kit"
    built = subprocess.run(["bash", GPU / "make_kit.sh"], capture_output=True, text=True, timeout=300,
                           env={**env, "VENV": venv, "KIT": str(kit), "WHEELS": "plan",
                                "DATA_SRC": str(tmp_path / "no-data"), "SIZE": "48", "SYNTH_IMAGES": "60"})
    assert built.returncode == 0, built.stdout + built.stderr
    planned = dict(line.split() for line in (kit / "plan.txt").read_text().splitlines())
    assert {"keras", "keras-tuner", "mlflow", "hydra-core"} <= planned.keys()
    assert not {"tensorflow", "jax", "numpy"} & planned.keys()

    out = tmp_path / "out"
    # CHECK_DIRS empty: HOME and the checkout's parent are written by other tests here; the checkout is checked.
    ran = subprocess.run(["bash", GPU / "run.sh"], capture_output=True, text=True, timeout=880,
                         env={**env, "OUT": str(out), "QUICK": "1", "PY": str(python), "KIT": str(kit),
                              "KIT_TMP": str(tmp_path / "tmp"), "STEPS": "project,bench,sweep,cmd,pack,check",
                              "CMD": 'test -d "$DATA/train" && ls "$WORK/mlruns"',
                              "CHECK_DIRS": "", "DEADLINE_S": "840", "TIMEOUT_SCALE": "4"})
    log = (out / "run.log").read_text() if (out / "run.log").exists() else ran.stdout + ran.stderr
    assert ran.returncode == 0, log[-6000:]
    for step in ("project", "bench", "sweep", "cmd", "pack", "check"):
        assert f"step {step}: exit 0" in log, log[-6000:]
    assert "| cnn | 32 | light |" in (out / "bench.txt").read_text()
    assert "mlflow.db" in (out / "cmd.txt").read_text()
    sweep = (out / "sweep.log").read_text()
    assert "pneumo compare --experiment kermany-screen" in sweep and "lever=baseline" in sweep

    back = tmp_path / "back"
    with tarfile.open(out / "mlruns.tgz") as t:
        t.extractall(back, filter="data")
    import mlflow

    client = mlflow.MlflowClient(paths.local_tracking_uri(back / "mlruns"))
    exp = client.get_experiment_by_name("kermany-screen")
    jobs = client.search_runs([exp.experiment_id], f"tags.`{names.TAG_ROLE}` = 'job'")
    assert [j.info.status for j in jobs] == ["FINISHED"]
    assert jobs[0].data.tags[names.TAG_KERAS_BACKEND] == "jax"
