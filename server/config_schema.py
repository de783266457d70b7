"""The configuration's JSON Schema, for TOML editors (Taplo / Even Better TOML) and ``signoff schema``.

The schema is generated from the pydantic models in ``config.py`` and shipped in the package as
``config.schema.json`` (a test keeps the two equal), so printing it imports nothing heavy.
Regenerate it after changing a model: ``python -m signoff.server.config_schema > server/config.schema.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).with_name("config.schema.json")


def generate() -> dict[str, Any]:
    """The schema of a ``signoff.toml``, from the models (imports pydantic)."""
    from .config import Config

    schema = Config.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "signoff configuration (signoff.toml)",
        "description": "Routes, approvers and channels for signoff. Every key: docs/configuration.md.",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def generated_text() -> str:
    return json.dumps(generate(), indent=2, ensure_ascii=False) + "\n"


def shipped_text() -> str:
    """The schema file that ships in the package."""
    return SCHEMA_FILE.read_text(encoding="utf-8")


def schema_directive() -> str:
    """The ``#:schema`` first line for a config file, pointing editors at the shipped schema."""
    return f"#:schema {SCHEMA_FILE.resolve().as_uri()}"


if __name__ == "__main__":
    print(generated_text(), end="")
