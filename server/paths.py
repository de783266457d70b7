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
    """``$SIGNOFF_STATE_DIR``, else systemd's ``$STATE_DIRECTORY`` (its first entry: ``StateDirectory=``
    may list several, colon-separated), else ``$XDG_STATE_HOME/signoff``, else ``~/.local/state/signoff``."""
    if explicit := os.environ.get("SIGNOFF_STATE_DIR"):
        return Path(explicit).expanduser()
    if systemd := os.environ.get("STATE_DIRECTORY", "").split(":")[0]:
        return Path(systemd)  # already the service's own folder (e.g. ~/.local/state/signoff): no /signoff added
    return _xdg("XDG_STATE_HOME", ".local/state") / "signoff"


def user_config_file() -> Path:
    """``$XDG_CONFIG_HOME/signoff/signoff.toml``, else ``~/.config/signoff/signoff.toml`` (what ``init`` writes)."""
    return _xdg("XDG_CONFIG_HOME", ".config") / "signoff" / "signoff.toml"


def _xdg(variable: str, default_under_home: str) -> Path:
    """An XDG base folder. The spec ignores a relative value; so do we (it would follow the
    current folder, which agents control)."""
    base = os.environ.get(variable, "")
    return Path(base) if base and os.path.isabs(base) else Path.home() / default_under_home


def find_config(arg: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """The config file to read and the rule that chose it.

    ``--config``, else ``$SIGNOFF_CONFIG``, else the user's config file when it exists, else
    ``(None, "embedded default")``. Never the current folder: agents write files there, and a
    config an agent wrote could lower the bar.
    """
    if arg is not None:
        return Path(arg).expanduser(), "--config"
    if env := os.environ.get("SIGNOFF_CONFIG"):
        return Path(env).expanduser(), "$SIGNOFF_CONFIG"
    user = user_config_file()
    if user.is_file():
        return user, "the user config file"
    return None, "embedded default"


def missing_config(file: Path, origin: str) -> str:
    """What to say when the chosen config file does not exist."""
    return f"the file does not exist (named by {origin}); create it with `signoff init --path {file}`"


def config_file(arg: str | os.PathLike[str] | None) -> Path | None:
    """The config file to read (see ``find_config``), or None for the embedded default."""
    return find_config(arg)[0]


def store_path(configured: str | os.PathLike[str] | None, base_dir: Path | None) -> Path:
    """The absolute database path for a ``[store] path`` value (relative to the config's folder)."""
    if configured is None:
        return default_state_dir() / "signoff.db"
    path = Path(configured).expanduser()
    return path if path.is_absolute() else (base_dir or Path.cwd()) / path
