"""``signoff init`` and ``signoff schema``: set-up commands that need no configuration."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from .paths import user_config_file


def _say(message: str) -> None:
    print(f"signoff: {message}", file=sys.stderr)


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the configuration's JSON Schema (the copy shipped in the package)."""
    from .config_schema import shipped_text

    sys.stdout.write(shipped_text())
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Write a commented starter config: to the user config file, or to ``--path``."""
    from .config_schema import schema_directive
    from .starter import starter_config

    default = user_config_file()
    target = Path(args.path).expanduser() if args.path else default
    path = Path(os.path.abspath(target))
    if path.is_dir():
        _say(f"{path} is a folder; give --path a file name, e.g. --path {path / 'signoff.toml'}")
        return 1
    if path.exists() and not args.force:
        _say(f"{path} exists; use --force to overwrite it, or --path to write elsewhere")
        return 1
    # At the default place every command finds the file by itself; elsewhere they need --config.
    flag = "" if path == Path(os.path.abspath(default)) else f" --config {shlex.quote(str(path))}"
    try:
        text = starter_config(
            args.approver,
            args.telegram_user_id,
            config_flag=flag,
            schema_line=schema_directive(),
            slack_user_id=args.slack_user_id,
        )
    except ValueError as exc:
        _say(str(exc))
        return 2
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write beside, then rename: an interrupted init leaves the old file or none, never half of one.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    except OSError as exc:
        _say(f"cannot write {path}: {exc.strerror or exc}; choose a writable place with --path")
        return 1
    print(f"wrote {path}")
    if flag:
        print(f"not the default place ({default}): give commands --config {shlex.quote(str(path))}, "
              f"or export SIGNOFF_CONFIG={shlex.quote(str(path))}")  # fmt: skip
    print(f"next: signoff check-config{flag}   then   signoff doctor{flag}")
    return 0
