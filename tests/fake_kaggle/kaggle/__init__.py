"""A stand-in for the `kaggle` client package: the network is the one thing tests fake.

Put tests/fake_kaggle first on sys.path (PYTHONPATH for a subprocess) and `import kaggle`
finds this instead of the real client. It keeps the real client's surface as pneumo uses
it (`kaggle.api.authenticate()`, `kaggle.api.dataset_download_files(dataset, path=...)`,
writing `<path>/<dataset slug>.zip`) and raises what the real one raises (kaggle 2.x:
requests' HTTPError with the response, ConnectionError without a network).

Driven by the environment, so it works in a child `pneumo` process too:
  FAKE_KAGGLE_ZIP    the archive a download hands out
  FAKE_KAGGLE_FAULT  auth (HTTP 401) | forbidden (HTTP 403) | network | not_found (HTTP 404)
                     | no_file (the client returns, no zip written) | corrupt (a truncated zip)
                     | damaged (a zip whose last member cannot be decompressed)
  FAKE_KAGGLE_CALLS  a file each download appends its dataset name to
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import zipfile
from pathlib import Path

import requests

log = logging.getLogger("kaggle")


def _http_error(status: int, reason: str, url: str) -> requests.exceptions.HTTPError:
    response = requests.models.Response()
    response.status_code, response.reason, response.url = status, reason, url
    return requests.exceptions.HTTPError(f"{status} Client Error: {reason} for url: {url}", response=response)


class KaggleApi:
    def __init__(self):
        self.username = None

    def authenticate(self):
        """As the real client: environment first, then kaggle.json; exit(1) without either."""
        username = os.environ.get("KAGGLE_USERNAME")
        if not (username and os.environ.get("KAGGLE_KEY")):
            config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
            if not config.is_file():
                print(f"Could not find kaggle.json. Make sure it's located in {config.parent}.")
                raise SystemExit(1)
            username = json.loads(config.read_text())["username"]
        self.username = username
        log.info("Kaggle API authenticated as %s", username)  # a library's log line quoting a credential

    def dataset_download_files(self, dataset, path=None, force=False, quiet=True, unzip=False, licenses=()):
        url = f"https://www.kaggle.com/api/v1/datasets/download/{dataset}"
        if os.environ.get("FAKE_KAGGLE_CALLS"):
            with open(os.environ["FAKE_KAGGLE_CALLS"], "a") as f:
                f.write(dataset + "\n")
        fault = os.environ.get("FAKE_KAGGLE_FAULT", "")
        if fault == "network":
            raise requests.exceptions.ConnectionError(
                "HTTPSConnectionPool(host='www.kaggle.com', port=443): Max retries exceeded with url: "
                f"{url} (Caused by NameResolutionError: Failed to resolve 'www.kaggle.com')")
        if fault in ("auth", "forbidden", "not_found"):
            status, reason = {"auth": (401, "Unauthorized"), "forbidden": (403, "Forbidden"),
                              "not_found": (404, "Not Found")}[fault]
            raise _http_error(status, reason, url)
        if fault == "no_file":
            return
        outfile = Path(path) / (dataset.split("/")[-1] + ".zip")
        archive = Path(os.environ["FAKE_KAGGLE_ZIP"])
        data = bytearray(archive.read_bytes())
        if fault == "corrupt":
            outfile.write_bytes(data[: len(data) // 2])
        elif fault == "damaged":  # the last member's deflate stream starts with a reserved block type
            with zipfile.ZipFile(archive) as zf:
                last = [m for m in zf.infolist() if m.compress_size][-1]  # extracted after all the others
            name_len, extra_len = struct.unpack("<HH", data[last.header_offset + 26: last.header_offset + 30])
            data[last.header_offset + 30 + name_len + extra_len] = 0xFF
            outfile.write_bytes(data)
        else:
            shutil.copy(archive, outfile)


api = KaggleApi()
