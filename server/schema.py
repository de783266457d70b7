"""The migrations, by name: SQLite's files in ``migrations/`` and PostgreSQL's in ``pg_migrations/``.

Both stores record the names they applied in their ``migrations`` table; PostgreSQL's baseline
stands for SQLite's 0001…0012, and every later migration comes as a pair of files of one name.
"""

from __future__ import annotations

from importlib import resources

from . import queries
from .errors import StoreError


def _read(folder_name: str) -> list[tuple[str, str]]:
    folder = resources.files(__package__).joinpath(folder_name)
    names = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


# Named migrations, applied in order, each recorded in the `migrations` table: the files in
# migrations/, named NNNN_what.sql. Never edit one that has shipped: add a new file.
MIGRATIONS: list[tuple[str, str]] = _read("migrations")
PG_MIGRATIONS: list[tuple[str, str]] = _read("pg_migrations")

assert MIGRATIONS[-1][0] == queries.SCHEMA, "update queries.SCHEMA with the newest migration"


def refuse_newer(done: set[str], where: str) -> None:
    """Refuse a store a newer signoff has migrated: this one would misread it."""
    known = {name for name, _ in MIGRATIONS}
    if unknown := sorted(done - known):
        raise StoreError(
            f"the database ({where}) was upgraded by a newer signoff (migration {unknown[-1]}, which this "
            f"version does not know); upgrade signoff to use it"
        )
