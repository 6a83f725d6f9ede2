"""One connection to ClickHouse, embedded (chDB) or a server, behind the same four methods.

``chdb:///path`` opens the in-process chDB engine (one engine path per process; several stores on the
same path inside one process share it). ``http://host:8123`` (or https) talks to a server. Values are
always bound server-side (``{name:Type}`` placeholders + ``parameters``), never formatted into SQL.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from agenttrail.errors import AgentTrailError, ConfigError

logger = logging.getLogger(__name__)

DEFAULT_DATABASE = "agenttrail"
_DATABASE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class StoreError(AgentTrailError):
    """ClickHouse refused or failed a statement (connection, SQL, insert)."""

    code = "clickhouse"


def validate_database(name: str) -> str:
    if not _DATABASE_RE.fullmatch(name):
        raise ConfigError(f"invalid ClickHouse database name {name!r}")
    return name


def is_embedded(url: str) -> bool:
    return url.startswith("chdb:")


def embedded_owner(url: str) -> int | None:
    """The PID of another live process that owns this embedded store, or None.

    chDB is one engine per process and writes `PID: n` to `<path>/status`; opening a store another
    process owns fails (and chDB prints the error itself), so callers ask first."""
    if not is_embedded(url):
        return None
    path = url.split("://", 1)[1]
    try:
        first = (Path(path) / "status").read_text().splitlines()[0]
        pid = int(first.split(":", 1)[1])
    except (OSError, IndexError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


class ClickHouseStore:
    """A thread-safe wrapper over one clickhouse-connect client, bound to one database."""

    def __init__(self, url: str, database: str = DEFAULT_DATABASE, settings: Mapping[str, Any] | None = None):
        self.url = url
        self.database = validate_database(database)
        self.embedded = is_embedded(url)
        if not (self.embedded or url.startswith(("http://", "https://"))):
            raise ConfigError(f"ClickHouse URL must be chdb:///path or http(s)://host:port, got {url!r}")
        self._lock = threading.RLock()
        try:
            # Connect without a database first: it may not exist yet.
            self._client = clickhouse_connect.get_client(dsn=url, settings=dict(settings or {}))
            self._client.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
            self._client.database = self.database
        except ClickHouseError as exc:
            raise StoreError(f"cannot open ClickHouse at {url}: {exc}") from exc
        logger.info("clickhouse store open: %s (database %s)", url, self.database)

    def command(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        """Run a statement that returns at most a scalar (DDL, ALTER, DELETE, SELECT count())."""
        with self._lock:
            try:
                return self._client.command(sql, parameters=dict(parameters or {}), settings=settings)
            except ClickHouseError as exc:
                raise StoreError(str(exc)) from exc

    def query_rows(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                result = self._client.query(sql, parameters=dict(parameters or {}), settings=settings)
            except ClickHouseError as exc:
                raise StoreError(str(exc)) from exc
        return [tuple(row) for row in result.result_rows]

    def query_dicts(
        self,
        sql: str,
        parameters: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        with self._lock:
            try:
                result = self._client.query(sql, parameters=dict(parameters or {}), settings=settings)
            except ClickHouseError as exc:
                raise StoreError(str(exc)) from exc
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]] | Iterable[Sequence[Any]],
        column_names: Sequence[str],
        settings: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert rows; returns how many the server acknowledged. Raises StoreError on failure."""
        data = rows if isinstance(rows, list) else list(rows)
        if not data:
            return 0
        with self._lock:
            try:
                summary = self._client.insert(
                    table, data, column_names=list(column_names), settings=dict(settings or {})
                )
            except ClickHouseError as exc:
                raise StoreError(f"insert into {table} failed: {exc}") from exc
        return int(summary.written_rows or len(data))

    def close(self) -> None:
        with self._lock:
            self._client.close()
