"""Versioned schema: ``sql/NNN_name.sql`` applied in order, each recorded in ``schema_migrations``.

A migration file is immutable once applied: its SHA-256 is recorded, and a file whose content
changed after it was applied is refused (add a new NNN file instead).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources

from agenttrail.sinks.clickhouse.store import ClickHouseStore, StoreError

logger = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")

MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    sha256     String,
    applied_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


class SchemaError(StoreError):
    code = "clickhouse_schema"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        return split_statements(self.sql)


def split_statements(sql: str) -> list[str]:
    """Split a file on `;` at end of line; `--` comment lines are dropped."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    chunks = re.split(r";\s*(?:\n|$)", "\n".join(lines))
    return [chunk.strip() for chunk in chunks if chunk.strip()]


def load_migrations() -> list[Migration]:
    folder = resources.files("agenttrail.sinks.clickhouse") / "sql"
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _FILE_RE.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise SchemaError(f"duplicate migration versions in sql/: {versions}")
    return found


def applied_migrations(store: ClickHouseStore) -> dict[int, str]:
    store.command(MIGRATIONS_DDL)
    rows = store.query_rows("SELECT version, sha256 FROM schema_migrations FINAL ORDER BY version")
    return {int(version): str(sha) for version, sha in rows}


def apply_schema(store: ClickHouseStore, migrations: list[Migration] | None = None) -> list[int]:
    """Apply every migration not yet recorded; returns the versions applied now."""
    todo = load_migrations() if migrations is None else migrations
    done = applied_migrations(store)
    applied: list[int] = []
    for migration in todo:
        recorded = done.get(migration.version)
        if recorded is not None:
            if recorded != migration.sha256:
                raise SchemaError(
                    f"migration {migration.version:03d}_{migration.name} changed after it was applied; "
                    "add a new migration file instead"
                )
            continue
        for statement in migration.statements():
            store.command(statement)
        store.insert(
            "schema_migrations",
            [(migration.version, migration.name, migration.sha256)],
            column_names=("version", "name", "sha256"),
        )
        logger.info("applied clickhouse migration %03d_%s", migration.version, migration.name)
        applied.append(migration.version)
    return applied


def open_store(url: str, database: str = "agenttrail") -> ClickHouseStore:
    """Open a store and bring its schema up to date."""
    store = ClickHouseStore(url, database=database)
    apply_schema(store)
    return store
