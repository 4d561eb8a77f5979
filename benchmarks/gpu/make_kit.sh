#!/usr/bin/env bash
# Build .gpu-kit/ (ignored, carried to the GPU machine by the device call): the wheels its image
# lacks and the data at 128 px. benchmarks/gpu/run.sh runs there from the checkout itself.
#
#   make gpu-kit [VENV=/path/to/venv]        (= bash benchmarks/gpu/make_kit.sh, from anywhere)
#
# Environment:
#   VENV=.venv       its versions are carried (wheel_plan.py walks pyproject's dependencies there);
#                    its Python (with Pillow) also makes the data
#   WHEELS=download  download: fetch the plan's cp312 manylinux wheels (needs the package index);
#                    plan: write the plan only (the CPU quick mode: nothing fetched)
#   DATA_SRC=<checkout>/../shared/data   kermany-224/ [kermany-224-external/]; where it is absent the
#                    kit gets the synthetic set instead (pneumo data synth, SYNTH_IMAGES films)
#   SIZE=128         side of the kit's images, px
#   KIT=<checkout>/.gpu-kit   MAX_MIB=60 (all that a call sends; the device tool takes 64)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
VENV=${VENV:-$ROOT/.venv}
PY=$VENV/bin/python
KIT=${KIT:-$ROOT/.gpu-kit}
DATA_SRC=${DATA_SRC:-$ROOT/../shared/data}
SIZE=${SIZE:-128}
SYNTH_IMAGES=${SYNTH_IMAGES:-1000}
MAX_MIB=${MAX_MIB:-60}
die() { echo "make_kit: $*" >&2; exit 1; }

[ -x "$PY" ] || die "no venv at $VENV (make install, or VENV=/path/to/a/venv with pneumo's dependencies)"
PY=$(cd "$(dirname "$PY")" && pwd)/python
mkdir -p "$KIT"
KIT=$(cd "$KIT" && pwd)
case $KIT/ in "$ROOT"/*)  # inside the checkout, it must be ignored: never committed, sent only when carried
  git check-ignore -q "$KIT/KIT.txt" || die "$KIT is not ignored by git (.gitignore has /.gpu-kit/)" ;;
esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 1. The plan: pneumo's dependencies at the venv's versions, less the GPU image's packages.
"$PY" "$HERE/wheel_plan.py" > "$KIT/plan.txt" || die "wheel_plan.py: the plan is incomplete (above)"
echo "make_kit: $(wc -l < "$KIT/plan.txt") wheels planned from $VENV"

# 2. One wheel per package for CPython 3.12 on manylinux x86-64 (what the GPU machine runs).
DL=("$PY" -m pip download -qq --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
fetch() {  # NAME==VERSION into $KIT/whl
  case $1 in
    antlr4-python3-runtime==*)  # published as an sdist only; pure Python, so the wheel built here fits there
      "$PY" -m pip wheel -qq --no-deps --no-binary=:all: -w "$KIT/whl" "$1" ;;
    mlflow==*)  # less its web-UI bundle (7.7 of 12 MB): the GPU run serves no UI
      "${DL[@]}" -d "$tmp" "$1" && "$PY" "$HERE/strip_mlflow_ui.py" "$tmp"/mlflow-*.whl "$KIT/whl" ;;
    *) "${DL[@]}" -d "$KIT/whl" "$1" ;;
  esac
}
if [ "${WHEELS:-download}" = download ]; then
  rm -rf "$KIT/whl" && mkdir -p "$KIT/whl"
  while read -r name version; do
    fetch "$name==$version" || die "no cp312 manylinux wheel for $name==$version"
  done < "$KIT/plan.txt"
  # pip install --no-deps cannot choose between two versions of one package: exactly one each.
  dups=$(ls "$KIT/whl" | cut -d- -f1 | tr 'A-Z_.' 'a-z--' | sort | uniq -d)
  [ -z "$dups" ] || die "two wheels of: $dups"
  echo "make_kit: $(ls "$KIT/whl" | wc -l) wheels, $(du -sh --apparent-size "$KIT/whl" | cut -f1)"
fi

# 3. The data: Kermany at $SIZE px (same file names: pneumo reads patients from them), else synthetic.
# Remade only when the source's file list or SIZE changed.
data() {  # SRC DST
  local stamp
  stamp="$(cd "$1" && find . -type f -printf '%p %s\n' | sort | cksum) size $SIZE"
  if [ -d "$2" ] && [ "$(cat "$2.stamp" 2>/dev/null)" = "$stamp" ]; then echo "make_kit: $2 is up to date"; return; fi
  rm -rf "$2" "$2.stamp"
  "$PY" "$HERE/make_data.py" "$1" "$2" "$SIZE" 90 && echo "$stamp" > "$2.stamp"
}
mkdir -p "$KIT/data"
if [ -d "$DATA_SRC/kermany-224/train" ]; then
  rm -rf "$KIT/data/synthetic"
  data "$DATA_SRC/kermany-224" "$KIT/data/kermany"
  [ -d "$DATA_SRC/kermany-224-external" ] && data "$DATA_SRC/kermany-224-external" "$KIT/data/kermany-external"
else
  echo "make_kit: no $DATA_SRC/kermany-224: the kit gets the synthetic set ($SYNTH_IMAGES films at $SIZE px)"
  rm -rf "$KIT/data/kermany" "$KIT/data/kermany-external" "$KIT/data/synthetic"
  PYTHONPATH=$ROOT "$PY" -m pneumo data synth "$KIT/data/synthetic" --n-images "$SYNTH_IMAGES" --size "$SIZE"
fi

# 4. What the kit was built from.
{
  echo "built $(date -u +%FT%TZ) by benchmarks/gpu/make_kit.sh, data at $SIZE px: $(ls "$KIT/data" | grep -v stamp | xargs)"
  echo "checkout $(git log -1 --format='%h %s' 2>/dev/null || echo '(no commit)')$(git diff --quiet HEAD 2>/dev/null || echo ' (uncommitted changes)')"
  echo "wheels at the versions of $VENV:"
  sed 's/^/  /' "$KIT/plan.txt"
} > "$KIT/KIT.txt"

# 5. All that a call carrying .gpu-kit sends: tracked and untracked-not-ignored files, and the kit.
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
checkout=$(git ls-files -z --cached --others --exclude-standard | { xargs -0 -r stat -c %s -- 2>/dev/null || true; } \
           | awk '{ s += $1 } END { print s + 0 }')
kit=$(du -sb "$KIT" | cut -f1)
echo "make_kit: the checkout $(mib "$checkout") + .gpu-kit $(mib "$kit") (whl $(mib "$(du -sb "$KIT/whl" 2>/dev/null | cut -f1 || echo 0)"), data $(mib "$(du -sb "$KIT/data" | cut -f1)"))"
(( checkout + kit <= MAX_MIB * 1048576 )) || die "too big: $(mib $(( checkout + kit ))) > $MAX_MIB MiB (SIZE=96, or remove untracked files)"
echo "make_kit: ready in $KIT; the device command is in benchmarks/gpu/README.md"
