"""Copy an mlflow wheel without its web-UI bundle (mlflow/server/js/): same name, version and code.

    python benchmarks/gpu/strip_mlflow_ui.py SRC.whl DEST_DIR

The UI's static files are 7.7 of the wheel's 12.0 MB (mlflow 3.17) and only `mlflow ui` /
`mlflow server` serve them; the GPU machine runs neither. Every other member is copied byte for
byte and RECORD loses the removed files' lines, so `pip install` and importlib.metadata behave as
for the original (importlib.metadata.version("mlflow") is what pneumo pins a logged model's
requirements with; mlflow-skinny has no "mlflow" distribution).
"""

import sys
import zipfile
from pathlib import Path

DROP = "mlflow/server/js/"


def strip(src: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / src.name
    dropped = 0
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for info in zin.infolist():
            if info.filename.startswith(DROP):
                dropped += 1
                continue
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                data = "".join(line for line in data.decode().splitlines(keepends=True)
                               if not line.startswith(DROP)).encode()
            zout.writestr(info, data)
    print(f"{out}: {dropped} files under {DROP} left out, {out.stat().st_size / 1e6:.1f} MB "
          f"(was {src.stat().st_size / 1e6:.1f})")
    return out


if __name__ == "__main__":
    strip(Path(sys.argv[1]), Path(sys.argv[2]))
