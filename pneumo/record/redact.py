"""Secrets never reach the record: credential-looking values are redacted from params, tags,
artifacts, Hydra's saved files and log lines: values of keys named like secrets, values of
credential-looking environment variables, and the password of any `user:password@` in a URI,
whatever the key that holds it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

# A key that looks like it holds a credential never has its value recorded.
SECRET_WORDS = r"key|token|secret|passw|credential|auth|cookie|session|kaggle_user"


SECRET_KEY = re.compile(SECRET_WORDS, re.I)


REDACTED = "***"


def environ() -> dict[str, str]:
    """A snapshot of the environment that another thread may change meanwhile.

    MLflow's telemetry thread sets and deletes variables while a job logs its params:
    `os.environ.items()` (and `.copy()`, which is `dict(os.environ)`) look each key up
    after listing the keys and raise KeyError for one deleted in between.
    """
    snapshot = {}
    for key in list(os.environ):  # listing the keys is atomic; each lookup may miss
        value = os.environ.get(key)
        if value is not None:
            snapshot[key] = value
    return snapshot


def secret_values() -> list[str]:
    """Values of credential-looking environment variables (KAGGLE_KEY, tokens...)."""
    return [v for k, v in environ().items() if SECRET_KEY.search(k) and len(v) >= 4]


# The password (or token) of a `user:password@` in a URI, in any value whatever its key: a tracking
# server's URL, a path, free text. RFC 3986 userinfo holds neither '/', '@' nor whitespace, so
# `models:/name@alias` and `runs:/id/...` never match; the user name is kept (it says who, not how).
_USERINFO = re.compile(r"(?P<user>[^\s/:@?#'\"\[\]{}()<>,;=]+):(?P<password>[^\s/@?#'\"]+)@")


def scrub(text: str) -> str:
    """`text` without the value of any credential-looking environment variable, nor any URI's password."""
    for value in secret_values():
        text = text.replace(value, REDACTED)
    return _USERINFO.sub(lambda m: m.group(0) if m.group("password") == REDACTED else
                         f"{m.group('user')}:{REDACTED}@", text)


def split_userinfo(uri: str) -> tuple[str, str | None, str | None]:
    """(the URI without its `user:password@`, user, password); (uri, None, None) when it has none."""
    m = _USERINFO.search(uri)
    if m is None or "://" not in uri[: m.start()]:
        return uri, None, None
    return uri[: m.start()] + uri[m.end():], m.group("user"), m.group("password")


_SECRET_ASSIGNMENT = re.compile(
    rf"(?P<key>[\w.+~/-]*(?:{SECRET_WORDS})[\w.-]*)(?P<sep>\s*[=:]\s*)"
    r"(?P<q>['\"]?)(?P<value>[^\s'\",\]]+)",
    re.I,
)


def scrub_text(text: str) -> str:
    """`scrub`, plus the value of any `secret_key=value` / `token: value` in free text."""
    text = scrub(text)
    return _SECRET_ASSIGNMENT.sub(
        lambda m: m.group(0) if m.group("value") == REDACTED else
        f"{m.group('key')}{m.group('sep')}{m.group('q')}{REDACTED}", text)


class RedactFilter(logging.Filter):
    """Logging filter (wired in conf/hydra/*_logging/redacted.yaml): no credential in any log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub_text(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


def redact_overrides(overrides: list[str]) -> list[str]:
    out = []
    for item in overrides:
        key, sep, _ = item.partition("=")
        out.append(f"{key}{sep}{REDACTED}" if sep and SECRET_KEY.search(key) else scrub(item))
    return out


def redact_config(node):
    """The config with credential-looking keys' values replaced, for artifacts."""
    if isinstance(node, Mapping):
        return {k: REDACTED if SECRET_KEY.search(str(k)) and not isinstance(v, Mapping) else redact_config(v)
                for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [redact_config(v) for v in node]
    return scrub(node) if isinstance(node, str) else node


def redact_yaml(text: str) -> str:
    """A saved YAML file (Hydra's .hydra/*.yaml, multirun.yaml) with its credentials redacted, still YAML.

    Redacting the text itself breaks it: an unquoted `***` reads as a YAML alias, and a key
    like `exclude_keys: []` loses its brackets. So the values are redacted in the parsed
    tree (credential-looking keys, credentials inside strings) and the tree written back.
    """
    import yaml

    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError:
        return scrub_text(text)  # not YAML after all: scrub it as text
    clean = _redact_tree(tree)
    return text if clean == tree else yaml.safe_dump(clean, sort_keys=False, allow_unicode=True, width=1 << 16)


def _redact_tree(node):
    if isinstance(node, Mapping):
        return {k: REDACTED if SECRET_KEY.search(str(k)) and not isinstance(v, (Mapping, list)) and v not in (None, "")
                else _redact_tree(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_redact_tree(v) for v in node]
    return scrub_text(node) if isinstance(node, str) else node
