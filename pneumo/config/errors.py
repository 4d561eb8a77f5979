"""The error a user gets for a config that cannot run: it names the key and what to do."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


class StoreError(ConfigError):
    """A tracking store that cannot be used as named (missing, not a database); the message names it."""
