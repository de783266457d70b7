"""The compiled configuration: what the hook's fast path needs of a validated config, cached.

Validating ``signoff.toml`` with pydantic costs far more than a hook may take, so after a full
validation (``load_and_save``) the hook stores the little it needs to decide a tool call at
once — each route's ``match``, ``auto`` and snapshot, the database path, the pinned identity —
as JSON in the state folder. ``lookup`` serves it back without importing pydantic, and only
when everything it was compiled from is unchanged:

- the key is a SHA-256 over the config file's exact text (read on every call, never trusted by
  its mtime), its resolved path, the state folder, this format's version and a stamp of
  signoff's own code (name, size and mtime of every module): an edit, a renamed or re-pointed
  file, another state folder or another signoff version is a miss, never a stale config;
- the file must be a regular file (no symlink), owned by this user, not readable or writable
  by anyone else, in a folder that only this user can write; its payload carries a checksum
  and is checked field by field. Anything else is a miss, and the caller validates in full.

The cache lives in the state folder (next to the default database), which the agent does not
control; whoever can write there can already write the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import default_state_dir, find_config

if TYPE_CHECKING:
    from .config import Config, RouteConfig

FORMAT = "signoff-config-cache-1"
CACHE_DIR = "config-cache"
MAX_CACHE_BYTES = 4_000_000
OPS = ("gt", "gte", "lt", "lte", "eq", "ne", "in_")


class Condition:
    """One metadata condition, as ``routing`` reads a ``config.Comparison``."""

    __slots__ = (*OPS, "model_fields_set")

    def __init__(self, ops: dict[str, Any]) -> None:
        self.model_fields_set = frozenset(ops)
        for op in OPS:
            setattr(self, op, ops.get(op))


class Matcher:
    """A route's ``match``, as ``routing.matches`` reads a ``config.Match``."""

    __slots__ = ("action", "metadata", "requested_by")

    def __init__(self, action: str | list[str] | None, requested_by: str | None, metadata: dict[str, Condition]):
        self.action = action
        self.requested_by = requested_by
        self.metadata = metadata


class Route:
    """What the fast path knows of a route: enough to tell whether it decides at once, and how."""

    __slots__ = ("approvers", "auto", "callback_url", "match", "name", "on_timeout", "snapshot", "timeout")

    def __init__(self, data: dict[str, Any]) -> None:
        self.name: str = _typed(data["name"], str)
        self.auto: str | None = _typed(data["auto"], str, None)
        if self.auto not in (None, "approve", "reject"):
            raise ValueError("auto")
        self.callback_url: str | None = _typed(data["callback_url"], str, None)
        self.match: Matcher | None = None if data["match"] is None else _matcher(data["match"])
        self.timeout: float = float(_typed(data["timeout"], float, int))
        self.on_timeout: str = _typed(data["on_timeout"], str)
        self.approvers: list[str] = [_typed(a, str) for a in _typed(data["approvers"], list)]
        self.snapshot: dict[str, Any] | None = _typed(data["snapshot"], dict, None)
        if self.auto is not None and self.snapshot is None:
            raise ValueError("snapshot")


class Compiled:
    """A validated configuration, as far as the hook's fast path reads it."""

    __slots__ = ("db_path", "routes", "stdio_identity")

    def __init__(self, data: dict[str, Any]) -> None:
        # None: the store is PostgreSQL, which the fast path leaves to the full path.
        path = _typed(data["db_path"], str, None)
        self.db_path = None if path is None else Path(path)
        if self.db_path is not None and not self.db_path.is_absolute():
            raise ValueError("db_path")
        self.stdio_identity: str | None = _typed(data["stdio_identity"], str, None)
        self.routes = [Route(_typed(r, dict)) for r in _typed(data["routes"], list)]
        if not self.routes:
            raise ValueError("routes")


def _typed(value: Any, *types: type | None) -> Any:
    """``value`` if it is one of ``types`` (None for None; bool is never a number), else ValueError."""
    for t in types:
        if t is None and value is None:
            return value
        if t is not None and isinstance(value, t) and not (t in (int, float) and isinstance(value, bool)):
            return value
    raise ValueError(f"unexpected {type(value).__name__}")


def _matcher(data: dict[str, Any]) -> Matcher:
    action = _typed(data["action"], str, list, None)
    if isinstance(action, list):
        action = [_typed(a, str) for a in action]
    metadata = {}
    for key, ops in _typed(data["metadata"], dict).items():
        ops = _typed(ops, dict)
        if not ops or any(op not in OPS for op in ops):
            raise ValueError("metadata")
        metadata[_typed(key, str)] = Condition(ops)
    return Matcher(action, _typed(data["requested_by"], str, None), metadata)


# --- compiling (after a full validation) ---------------------------------------------------


def compile_config(config: Config) -> dict[str, Any]:
    """The plain data ``Compiled`` is read from, made by the same code the service uses."""
    from .routing import resolve

    routes = []
    for route in config.routes:
        choice = resolve(config, route)
        routes.append(
            {
                "name": route.name,
                "auto": route.auto,
                "callback_url": route.callback_url,
                "match": _compile_match(route),
                "timeout": choice.timeout,
                "on_timeout": choice.on_timeout,
                "approvers": choice.approvers,
                # Only a route that decides at once is ever filed by the fast path.
                "snapshot": choice.snapshot() if route.auto is not None else None,
            }
        )
    db_path = None if config.store.url else str(config.db_path)
    return {"db_path": db_path, "stdio_identity": config.server.stdio_identity, "routes": routes}


def _compile_match(route: RouteConfig) -> dict[str, Any] | None:
    m = route.match
    if m is None:
        return None
    metadata = {key: {op: getattr(cond, op) for op in cond.model_fields_set} for key, cond in m.metadata.items()}
    return {"action": m.action, "requested_by": m.requested_by, "metadata": metadata}


# --- where, and under which key ------------------------------------------------------------


def _code_stamp() -> str:
    """Changes whenever signoff's code does (an edit, an upgrade, another install)."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = [here]
    with os.scandir(here) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.name.endswith(".py"):
                st = entry.stat()
                parts.append(f"{entry.name}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def _key(file: Path | None, text: str) -> str:
    h = hashlib.sha256()
    where = "<embedded default>" if file is None else str(file.resolve())
    # $HOME too: a `~` in [store] path was expanded when the copy was compiled.
    for part in (FORMAT, where, str(default_state_dir()), os.path.expanduser("~"), _code_stamp(), text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def cache_file(file: Path | None) -> Path:
    """Where the compiled form of ``file`` is kept (one per config file)."""
    where = "<embedded default>" if file is None else str(file.resolve())
    name = hashlib.sha256(where.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    state = default_state_dir()
    if not state.is_absolute():  # it would follow the current folder, which the agent controls
        raise ValueError(f"the state folder {state} is relative: no config cache")
    return state / CACHE_DIR / f"{name}.json"


def _checksum(payload: str) -> str:
    return hashlib.sha256(payload.encode("utf-8", "surrogatepass")).hexdigest()


def _private_dir(path: Path) -> bool:
    """``path`` is a real folder owned by this user that nobody else may write into."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o022


# --- reading and writing -------------------------------------------------------------------


def _read_config_text(file: Path | None) -> str | None:
    """The config file's text as ``load_config`` reads it ("" for the embedded default)."""
    if file is None:
        return ""
    try:
        return file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # the full load reports it


def lookup(arg: str | os.PathLike[str] | None) -> Compiled | None:
    """The compiled configuration for ``--config`` ``arg`` when the cache holds an exact,
    trustworthy copy of it; None otherwise (validate in full, then ``load_and_save``)."""
    try:
        file, _ = find_config(arg)
        text = _read_config_text(file)
        if text is None:
            return None
        path = cache_file(file)
        if not _private_dir(path.parent):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
                return None
            if st.st_size > MAX_CACHE_BYTES:
                return None
            raw = os.read(fd, MAX_CACHE_BYTES + 1)
        finally:
            os.close(fd)
        outer = json.loads(raw)
        if not isinstance(outer, dict) or outer.get("format") != FORMAT or outer.get("key") != _key(file, text):
            return None
        payload = _typed(outer.get("config"), str)
        if outer.get("checksum") != _checksum(payload):
            return None
        return Compiled(_typed(json.loads(payload), dict))
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None  # missing, foreign, corrupt or from another version: never trusted


def save(file: Path | None, text: str, config: Config) -> None:
    """Store the compiled form of ``config``, validated from exactly ``text``. Best effort: a
    cache that cannot be written only means the next hook validates in full again."""
    tmp: Path | None = None
    try:
        path = cache_file(file)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private_dir(path.parent):
            return
        payload = json.dumps(compile_config(config), sort_keys=True)
        body = json.dumps(
            {"format": FORMAT, "key": _key(file, text), "checksum": _checksum(payload), "config": payload}
        ).encode()
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, body)
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # atomic: a reader sees the old copy or the new one, never half of one
    except (OSError, ValueError, TypeError):
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def load_and_save(arg: str | os.PathLike[str] | None) -> Config:
    """``load_config(arg)``, validated in full; on success its compiled form is cached."""
    from .config import load_config, parse_config

    file, origin = find_config(arg)
    if file is None:
        # Parsed here, not through load_config: a user config file appearing meanwhile must not
        # be cached under the embedded default's key.
        from .config import DEFAULT_CONFIG_TOML

        config = parse_config(DEFAULT_CONFIG_TOML, source="<embedded default>", base_dir=None)
        config = config.model_copy(update={"origin": origin})
        save(None, "", config)
        return config
    text = _read_config_text(file)
    if text is None:
        return load_config(arg)  # the error, the usual way; nothing cached
    config = parse_config(text, source=str(file), base_dir=file.resolve().parent)
    config = config.model_copy(update={"origin": origin})
    save(file, text, config)
    return config
