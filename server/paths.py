"""Where the configuration and the database live, found without loading anything heavy.

``config.load_config`` and the fast console commands both use these, so a database path
is resolved the same way everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path


def package_version() -> str:
    """The installed package's version (``signoff --version``, the MCP ``serverInfo``)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("signoff")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "0+unknown"


def default_state_dir() -> Path:
    """``$SIGNOFF_STATE_DIR``, else ``$XDG_STATE_HOME/signoff``, else ``~/.local/state/signoff``."""
    if explicit := os.environ.get("SIGNOFF_STATE_DIR"):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "signoff"


def config_file(arg: str | os.PathLike[str] | None) -> Path | None:
    """The config file to read: ``--config``, else ``$SIGNOFF_CONFIG``, else none (the embedded default)."""
    chosen = arg if arg is not None else (os.environ.get("SIGNOFF_CONFIG") or None)
    return None if chosen is None else Path(chosen).expanduser()


def store_path(configured: str | os.PathLike[str] | None, base_dir: Path | None) -> Path:
    """The absolute database path for a ``[store] path`` value (relative to the config's folder)."""
    if configured is None:
        return default_state_dir() / "signoff.db"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path
