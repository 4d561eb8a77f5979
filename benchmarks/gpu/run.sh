#!/usr/bin/env bash
# pneumo on the lent GPU machine (one H100 or H200, Python 3.12 with JAX for CUDA, no TensorFlow,
# Keras, MLflow or Hydra, no network), from this checkout with .gpu-kit/ carried along
# (make gpu-kit builds it). benchmarks/gpu/README.md has the device command and what comes back.
#
#   OUT=<folder whose files come back> bash benchmarks/gpu/run.sh                    the GPU run
#   OUT=/tmp/o QUICK=1 PY=<a JAX venv>/bin/python bash benchmarks/gpu/run.sh         the CPU quick mode
#
# Steps, in order (STEPS picks some); a failing step leaves its log and the later steps still run:
#   install  the kit's wheels into $TMPD/site; Python, JAX, device and library versions
#   project  pneumo imports from this checkout and resolves its root here
#   bench    bench.py: images/s of a bare model.fit, resnet at 128 px, without and with Augment -> $OUT/bench.txt
#   sweep    pneumo sweep $SWEEP (kermany-screen: levers x seeds), then pneumo compare   -> $OUT/sweep.log
#   cmd      $CMD, a shell command of yours (not by default), in this environment           -> $OUT/cmd.txt
#   pack     the MLflow store in files of at most 16 MiB -> $OUT/mlruns.tgz (or .part0, .part1: cat them)
#   check    nothing written in the checkout outside ignored files, nor in $CHECK_DIRS
# Each step has a time limit, and the whole run ends by DEADLINE_S; $OUT/run.log holds this trace
# and, at its end, the seconds per step.
#
# Environment:
#   OUT          required: the folder whose files come back (8 files, 16 MiB each at most)
#   STEPS        default install,project,bench,sweep,pack,check
#   QUICK=1      tiny: one job (lever baseline, seed 0), one trial, one epoch at 32 px; the bench: cnn at 32 px
#   PY           the interpreter (default python3: the image's); a venv's with QUICK=1
#   DEADLINE_S   wall-clock budget in seconds (default 540: one 10-minute device command, with room);
#                TIMEOUT_SCALE multiplies each step's own limit (a loaded CPU: the quick test)
#   KIT          default <checkout>/.gpu-kit
#   DATA         training root in the Kaggle layout (default: the kit's kermany, else its synthetic set)
#   EXTERNAL     external test set: the test split of every job (default: the kit's kermany-external, else null)
#   SWEEP        the sweep file (default kermany-screen); SWEEP_ARGS: more overrides, as shell words;
#                EXPERIMENT: the one compare ranks (default: the sweep file's `experiment:`)
#   BENCH_ARGS   bench.py's options (default: resnet, 128 px, none and light, 5 epochs)
#   CMD          the cmd step's command, e.g. CMD='$PY benchmarks/augmentation.py --epochs 3'; CMD_TIMEOUT_S (300)
#   WORK         where pneumo writes its store, caches and Hydra folders (default $TMPD/pneumo-work)
#   KIT_TMP      instead of /tmp for everything the run writes outside $OUT ($TMPD)
#   CHECK_DIRS   folders outside the checkout where nothing may be written (default: HOME, the
#                checkout's parent, /var/tmp; the quick test narrows it: other people write there)
set -uo pipefail

: "${OUT:?set OUT to the folder whose files come back}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/run.log") 2>&1
TEE_PID=$!

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1
KIT=${KIT:-$ROOT/.gpu-kit}
TMPD=${KIT_TMP:-/tmp}
mkdir -p "$TMPD"
TMPD=$(cd "$TMPD" && pwd)
PY=${PY:-python3}
QUICK=${QUICK:-0}
STEPS=${STEPS:-install,project,bench,sweep,pack,check}
DEADLINE=${DEADLINE_S:-540}
SITE=$TMPD/site
WORK=${WORK:-$TMPD/pneumo-work}
mkdir -p "$WORK"
if [ -z "${DATA:-}" ]; then
  DATA=$KIT/data/kermany
  [ -d "$DATA/train" ] || DATA=$KIT/data/synthetic
fi
if [ -z "${EXTERNAL:-}" ]; then
  EXTERNAL=null
  [ -d "$KIT/data/kermany-external" ] && EXTERNAL=$KIT/data/kermany-external
fi
REAL_HOME=${HOME:-/root}
CHECK_DIRS=${CHECK_DIRS-$REAL_HOME $(dirname "$ROOT") /var/tmp}
MARK=$TMPD/pneumo-run-start
touch "$MARK"
sleep 1   # file times have one-second grain on some file systems: nothing of this run is as old as MARK
T0=$SECONDS
NAMES=() SECS=() RCS=()

left() { echo $(( DEADLINE - (SECONDS - T0) )); }
# cap WANT RESERVE: WANT (x TIMEOUT_SCALE) seconds, or fewer so that RESERVE seconds remain before the deadline (at least 20)
cap() {
  local want=$(( $1 * ${TIMEOUT_SCALE:-1} )) l=$(( $(left) - $2 ))
  (( l < want )) && l=$(( l > 20 ? l : 20 )) || l=$want
  echo "$l"
}
want() { [[ ",$STEPS," == *",$1,"* ]]; }
step() {  # step NAME FUNCTION
  echo "=== $(date +%T) step $1: start ($(left) s left of $DEADLINE)"
  local t=$SECONDS rc
  "$2"; rc=$?
  NAMES+=("$1") SECS+=($(( SECONDS - t ))) RCS+=("$rc")
  echo "=== $(date +%T) step $1: exit $rc after $(( SECONDS - t )) s"
}

# Home, caches and every library's config go under $TMPD: nothing outside the checkout, $TMPD and $OUT.
export HOME=$TMPD/pneumo-home
mkdir -p "$HOME"
printf '[safe]\n\tdirectory = *\n' > "$HOME/.gitconfig"   # the copy there may belong to another user
export KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX=$TMPD/pneumo-pycache
export KERAS_HOME=$HOME/.keras MPLCONFIGDIR=$HOME/matplotlib XDG_CACHE_HOME=$HOME/.cache CUDA_CACHE_PATH=$HOME/nv-cache
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
# XLA's compiled programs kept on disk, keyed by the program: a screen's seeds of one lever, and every job's
# evaluation functions, compile once. Measured on the CPU: a second identical toy job's 59 compilations took
# 0.8 s instead of 21 s.
export JAX_COMPILATION_CACHE_DIR=$TMPD/jax-cache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 COLUMNS=200   # rich tables at full width in logs
unset PNEUMO_ROOT MLFLOW_TRACKING_URI MLFLOW_RUN_ID MLFLOW_EXPERIMENT_ID MLFLOW_EXPERIMENT_NAME
# The kit's wheels first, then this checkout's pneumo, whatever the interpreter has installed.
export PYTHONPATH=$SITE:$ROOT PY DATA EXTERNAL WORK
GIT_CEILING_DIRECTORIES=$(dirname "$ROOT")   # pneumo's commit tag reads this checkout's .git, never one around it
export GIT_CEILING_DIRECTORIES
echo "run.sh: checkout $ROOT, kit $KIT, data $DATA, external $EXTERNAL, work $WORK, QUICK=$QUICK, PY=$PY"
head -3 "$KIT/KIT.txt" 2>/dev/null

s_install() {
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" --version; nproc; free -g | head -2
  if compgen -G "$KIT/whl/*.whl" > /dev/null; then
    env -u PYTHONPATH "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$SITE" "$KIT"/whl/*.whl || return 1
    # The carried wheels' requirements against this machine's packages: each line it prints is a risk.
    "$PY" "$HERE/reqcheck.py" "$SITE"
  else
    echo "run.sh: no wheels in $KIT/whl: $PY's own packages are used"
  fi
  timeout -k 10 "$(cap 120 400)" "$PY" - <<'EOF'
import importlib.metadata as md
import jax, keras, keras_tuner, mlflow, hydra
print("keras backend", keras.backend.backend(), "| devices", jax.devices())
for dist in ("jax", "jaxlib", "keras", "keras-tuner", "mlflow", "hydra-core", "omegaconf", "numpy", "scikit-learn",
             "pandas", "pillow", "matplotlib", "protobuf", "sqlalchemy", "pydantic", "nvidia-ml-py"):
    try:
        print(f"{dist:14s} {md.version(dist)}")
    except md.PackageNotFoundError:
        print(f"{dist:14s} (not installed)")
EOF
}

s_project() {
  "$PY" - "$ROOT" <<'EOF' || return 1
import sys
from pathlib import Path
import pneumo
from pneumo.config import paths
want = Path(sys.argv[1]).resolve()
print("pneumo", pneumo.__file__, "| root", paths.ROOT, "| default store", paths.local_tracking_uri())
assert Path(pneumo.__file__).resolve().is_relative_to(want), f"pneumo imported from {pneumo.__file__}, not {want}"
assert paths.ROOT.resolve() == want, f"pneumo resolves its root to {paths.ROOT}, not {want}"
EOF
  git -C "$ROOT" log --oneline -1 || echo "run.sh: no .git here: runs carry no commit tag (KIT.txt names the kit's)"
  git -C "$ROOT" status --short | head -20
  echo "data: $DATA ($(find "$DATA" -type f | wc -l) files); external: $EXTERNAL"
}

if [ "$QUICK" = 1 ]; then
  BENCH=(--models cnn --aug light --size 32 --epochs 2 --images 64 --batch 16)
  SWEEP_ARGV=(lever=baseline seed=0 trainer.epochs=1 trainer.image_size=32 trainer.batch_size=16
              trainer.chance_z=null evaluation.bootstrap=50)
else
  BENCH=()
  SWEEP_ARGV=()
fi
[ -n "${BENCH_ARGS:-}" ] && eval "BENCH=($BENCH_ARGS)"
[ -n "${SWEEP_ARGS:-}" ] && eval "SWEEP_ARGV+=($SWEEP_ARGS)"
SWEEP=${SWEEP:-kermany-screen}
EXPERIMENT=${EXPERIMENT:-$(sed -n 's/^experiment: *\([^ #]*\).*/\1/p' "$ROOT/sweeps/$SWEEP.yaml" 2>/dev/null)}
# Every output of pneumo under $WORK, as the tests isolate theirs (tests/helpers.py isolate).
ISOLATE=("paths.cache=$WORK/.cache" "tracking.store=$WORK/mlruns" "hydra.sweep.dir=$WORK/multirun" "hydra.run.dir=$WORK/outputs")

s_bench() {
  timeout -k 10 "$(cap 120 360)" "$PY" "$HERE/bench.py" --root "$DATA" --cache-dir "$WORK/.cache/data" \
    ${BENCH[@]+"${BENCH[@]}"} > "$OUT/bench.txt" 2>&1
  local rc=$?
  tail -20 "$OUT/bench.txt"
  return $rc
}

s_sweep() {
  local rc
  {
    local argv=("$SWEEP" "data.root=$DATA" "data.test_root=$EXTERNAL" ${SWEEP_ARGV[@]+"${SWEEP_ARGV[@]}"} "${ISOLATE[@]}")
    echo "### $(date +%T) pneumo sweep ${argv[*]}"
    timeout -k 15 "$(cap 100000 60)" "$PY" -m pneumo sweep "${argv[@]}"
    rc=$?
    echo "### sweep exit $rc at $(date +%T)"
    echo "### $(date +%T) pneumo compare --experiment $EXPERIMENT"
    MLFLOW_TRACKING_URI=sqlite:///$WORK/mlruns/mlflow.db timeout -k 10 "$(cap 60 30)" \
      "$PY" -m pneumo compare --format table --experiment "$EXPERIMENT"
    local compared=$?
    [ "$rc" = 0 ] && rc=$compared
    echo "### compare exit $compared at $(date +%T)"
  } > "$OUT/sweep.log" 2>&1
  tail -40 "$OUT/sweep.log"
  return $rc
}

s_cmd() {
  [ -n "${CMD:-}" ] || { echo "run.sh: STEPS has cmd, but CMD is empty"; return 2; }
  echo "### $(date +%T) $CMD" > "$OUT/cmd.txt"
  timeout -k 10 "$(cap "${CMD_TIMEOUT_S:-300}" 60)" bash -c "$CMD" >> "$OUT/cmd.txt" 2>&1
  local rc=$?
  tail -30 "$OUT/cmd.txt"
  return $rc
}

s_pack() {
  du -sh "$WORK"/* 2>/dev/null
  rm -f "$OUT"/mlruns.tgz*
  # What comes back: 8 files and 64 MiB together; the logs count.
  local n used
  n=$(find "$OUT" -maxdepth 1 -type f | wc -l)
  used=$(( ( $(du -sb "$OUT" | cut -f1) >> 20 ) + 2 ))
  timeout -k 10 "$(cap 90 0)" "$PY" "$HERE/pack.py" "$WORK/mlruns" "$OUT" --part-mib 16 \
    --max-parts $(( 8 - n - 1 )) --max-total-mib $(( 62 - used ))
}

s_check() {
  # Files this run wrote where nothing should be written: in the checkout (outside its .git) any
  # file that git does not ignore; anywhere under CHECK_DIRS outside the checkout, $TMPD and $OUT.
  local bad=$TMPD/pneumo-writes.txt d
  command -v git > /dev/null || { echo "run.sh: no git here: cannot tell the checkout's ignored files"; return 1; }
  # A repository of its own reads the checkout's .gitignore files: the checkout's .git may not have travelled.
  [ -d "$TMPD/pneumo-check/.git" ] || git init -q "$TMPD/pneumo-check" || return 1
  find "$ROOT" -xdev -newer "$MARK" \( -type f -o -type l \) -not -path "$ROOT/.git/*" -printf '%P\n' 2>/dev/null \
    | git --git-dir="$TMPD/pneumo-check/.git" --work-tree="$ROOT" check-ignore --no-index -v -n --stdin \
    | sed -n 's/^::\t//p' > "$bad"
  (( PIPESTATUS[1] < 128 )) || { echo "run.sh: git check-ignore failed"; return 1; }   # 1: nothing ignored
  for d in $CHECK_DIRS; do
    [ -d "$d" ] && [ "$d" != / ] || continue   # / holds the system's own logs: too broad to judge
    find "$d" -xdev -maxdepth 4 -newer "$MARK" \( -type f -o -type l \) -not -path "$ROOT/*" -not -path "$OUT/*" \
      -not -path "$TMPD/*" 2>/dev/null >> "$bad"
  done
  if [ -s "$bad" ]; then
    echo "run.sh: written outside the checkout's ignored files, \$TMPD and \$OUT ($(wc -l < "$bad") files):"
    head -40 "$bad"
    return 1
  fi
  echo "run.sh: nothing written outside the checkout's ignored files, $TMPD and $OUT"
}

# A fresh machine has no keras: install then, even when STEPS leaves it out.
if want install || ! "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("keras") is None)'; then
  step install s_install
fi
want project && step project s_project
want bench && step bench s_bench
want sweep && step sweep s_sweep
want cmd && step cmd s_cmd
want pack && step pack s_pack
want check && step check s_check

echo "=== $(date +%T) summary (QUICK=$QUICK, STEPS=$STEPS), seconds per step:"
for i in "${!NAMES[@]}"; do printf '  %-8s %5d s  exit %s\n' "${NAMES[$i]}" "${SECS[$i]}" "${RCS[$i]}"; done
printf '  %-8s %5d s\n' total $(( SECONDS - T0 ))
ls -la "$OUT"
failed=0
for rc in "${RCS[@]}"; do [ "$rc" = 0 ] || failed=1; done
exec >&- 2>&-
wait "$TEE_PID"
exit $failed
