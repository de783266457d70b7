"""A PostgreSQL server for the tests: the one ``SIGNOFF_TEST_POSTGRES_URL`` names, or a private throwaway cluster.

``server_url()`` starts the cluster on first use (once per process: each pytest-xdist worker gets its
own), listening on a Unix socket in a temporary folder only (no TCP port, so workers never clash), with
durability off (fsync, synchronous_commit, full_page_writes) since its data is thrown away. It is stopped
and removed when the process exits; a small watchdog does the same if the process dies without running
its exit handlers (pytest-timeout's thread method ends the process with ``os._exit``).

``fresh_schema_url(url)`` gives each test an isolated signoff store: a new schema, selected through the
connection's ``search_path`` (libpq's ``options`` parameter), so no database has to be created.

Debian's ``initdb`` and ``pg_ctl`` are not on PATH (``/usr/lib/postgresql/<version>/bin``) and refuse to
run as root: as root they run as the ``postgres`` user, from inside the cluster's folder.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import re
import secrets
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

PORT = 5432  # the socket's name only (.s.PGSQL.5432): there is no TCP listener
_SOCKET_NAME_LEN = len(f"/.s.PGSQL.{PORT}")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes with the terminating NUL

_lock = threading.Lock()
_started = False
_url: str | None = None
_error: str | None = None


def server_url() -> str | None:
    """The URL of a PostgreSQL server for tests, or None when there is none to be had.

    ``SIGNOFF_TEST_POSTGRES_URL`` wins; otherwise a private cluster is started once per process.
    With ``SIGNOFF_REQUIRE_POSTGRES=1`` a missing server is an error (RuntimeError with the reason)
    instead of None, so CI cannot silently skip the PostgreSQL tests."""
    given = os.environ.get("SIGNOFF_TEST_POSTGRES_URL")
    if given:
        return given
    global _started, _url, _error
    with _lock:
        if not _started:
            _started = True
            try:
                _url = _start_cluster()
            except _NoCluster as exc:
                _error = str(exc)
    if _url is None and os.environ.get("SIGNOFF_REQUIRE_POSTGRES") == "1":
        raise RuntimeError(f"SIGNOFF_REQUIRE_POSTGRES=1 but no PostgreSQL server for the tests: {_error}")
    return _url


def why_not() -> str | None:
    """Why ``server_url()`` returned None (for skip messages), or None if it did not."""
    return _error


def fresh_schema_url(base_url: str) -> str:
    """Create an empty schema ``t_<12 hex>`` and return ``base_url`` with it as the search_path."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}options=-csearch_path%3D{schema}"


def schema_of(url: str) -> str | None:
    """The schema a ``fresh_schema_url`` URL selects, or None."""
    match = re.search(r"[?&]options=-csearch_path%3D(t_[0-9a-f]{12})(?:&|$)", url)
    return match.group(1) if match else None


def drop_schema_of(url: str) -> None:
    """Drop the schema a ``fresh_schema_url`` URL selects, with everything in it (best effort)."""
    import psycopg

    schema = schema_of(url)
    if schema is None:
        return
    with contextlib.suppress(psycopg.Error), psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


class _NoCluster(Exception):
    pass


def _bindir() -> Path | None:
    def version(path: str) -> tuple[int, ...]:
        found = re.search(r"/postgresql/([0-9.]+)/bin/", path)
        return tuple(int(p) for p in found.group(1).split(".") if p) if found else ()

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version, reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
        except (OSError, subprocess.SubprocessError):
            return None
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").is_file():
            return bindir
    return None


def _start_cluster() -> str:
    bindir = _bindir()
    if bindir is None:
        raise _NoCluster("no initdb found (/usr/lib/postgresql/*/bin, PATH, pg_config --bindir); install postgresql")
    as_root = os.geteuid() == 0
    if as_root:
        try:
            pg_user = pwd.getpwnam("postgres")
        except KeyError:
            raise _NoCluster("running as root and there is no `postgres` user to run initdb and pg_ctl") from None
        if shutil.which("runuser") is None:
            raise _NoCluster("running as root and there is no runuser to run initdb and pg_ctl as postgres")
    base = tempfile.mkdtemp(prefix="signoff-pg-")
    if len(base) + _SOCKET_NAME_LEN > _SUN_PATH_MAX:  # a long TMPDIR: the socket's path would not fit
        os.rmdir(base)
        base = tempfile.mkdtemp(prefix="signoff-pg-", dir="/tmp")
    folder = Path(base)
    data = folder / "data"
    log = folder / "server.log"
    if as_root:
        os.chown(folder, pg_user.pw_uid, pg_user.pw_gid)

    def run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *argv] if as_root else list(argv)
        return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout, check=False)

    pg_ctl = str(bindir / "pg_ctl")
    stop = [pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]
    owner = os.getpid()

    def cleanup() -> None:
        if os.getpid() != owner:  # a forked child inherited the handler: the cluster is not its to stop
            return
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            run(*stop, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    try:
        initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"]
        done = run(*initdb, "--locale=C.UTF-8")
        if done.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)
            first = done
            done = run(*initdb, "--locale=C")
            if done.returncode != 0:
                raise _NoCluster(f"initdb failed:\n{first.stdout}{first.stderr}\n{done.stdout}{done.stderr}")
        options = " ".join(
            [
                f"-k {shlex.quote(str(folder))}",
                f"-p {PORT}",
                "-c listen_addresses=''",
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
                "-c max_connections=200",
            ]
        )
        started = run(pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "30", "-o", options, "start")
        if started.returncode != 0:
            server_log = log.read_text(errors="replace") if log.exists() else "(no server log)"
            raise _NoCluster(
                f"pg_ctl start failed (exit {started.returncode}):\n{started.stdout}{started.stderr}\n"
                f"server log:\n{server_log}"
            )
    except (OSError, subprocess.SubprocessError) as exc:
        cleanup()
        raise _NoCluster(f"could not run initdb/pg_ctl from {bindir}: {exc}") from None
    except _NoCluster:
        cleanup()
        raise
    atexit.register(cleanup)
    _watch(owner, stop, folder, as_root)
    return f"postgresql://postgres@/postgres?host={folder}&port={PORT}"


def _watch(owner: int, stop: list[str], folder: Path, as_root: bool) -> None:
    """Stop the cluster and remove its folder once process ``owner`` is gone, however it ended.

    A detached shell (its parent exits at once, so nothing here waits for it or warns about it)."""
    as_pg = "cd / && runuser -u postgres -- " if as_root else "cd / && "
    script = (
        f"while kill -0 {owner} 2>/dev/null; do sleep 1; done; "
        f"{as_pg}{shlex.join(stop)} >/dev/null 2>&1; rm -rf {shlex.quote(str(folder))}"
    )
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["sh", "-c", f"( {script} ) </dev/null >/dev/null 2>&1 &"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            timeout=10,
            check=False,
        )
