"""Per-tenant read-only analyst users for a ClickHouse *server*: user, row policy, quota, grant.

chDB (the embedded default) has no access control at all: there, tenant isolation for analysts
is the API's repository layer, and `create_analyst_user` refuses to pretend otherwise.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from string import Template

from agenttrail.errors import ConfigError
from agenttrail.kafka.topics import validate_tenant_id
from agenttrail.sinks.clickhouse.schema import split_statements
from agenttrail.sinks.clickhouse.store import ClickHouseStore, validate_database

logger = logging.getLogger(__name__)

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class AnalystLimits:
    queries_per_hour: int = 1_000
    read_rows_per_hour: int = 5_000_000_000
    result_rows_per_hour: int = 50_000_000
    execution_seconds_per_hour: int = 1_800
    max_execution_time: int = 60


def analyst_user_name(tenant_id: str) -> str:
    return "analyst_" + validate_tenant_id(tenant_id).replace("-", "_")


def _template() -> Template:
    path = resources.files("agenttrail.sinks.clickhouse") / "sql" / "templates" / "tenant_analyst.sql"
    return Template(path.read_text(encoding="utf-8"))


def analyst_user_sql(
    tenant_id: str,
    password_sha256_hex: str,
    *,
    database: str = "agenttrail",
    limits: AnalystLimits = AnalystLimits(),
) -> list[str]:
    """The statements that create tenant_id's analyst (idempotent: IF NOT EXISTS everywhere).

    Identifiers cannot be bound as parameters, so every interpolated value is validated first:
    the tenant id by its regex, the database by its own, the password as 64 lowercase hex chars,
    the limits as ints.
    """
    tenant = validate_tenant_id(tenant_id)
    if not _HEX64.fullmatch(password_sha256_hex):
        raise ConfigError("analyst password must be given as its SHA-256, 64 lowercase hex chars")
    values = {name: int(getattr(limits, name)) for name in AnalystLimits.__dataclass_fields__}
    sql = _template().substitute(
        tenant=tenant,
        user=analyst_user_name(tenant),
        db=validate_database(database),
        password_sha256=password_sha256_hex,
        **values,
    )
    return split_statements(sql)


def drop_analyst_user_sql(tenant_id: str, *, database: str = "agenttrail") -> list[str]:
    tenant = validate_tenant_id(tenant_id)
    db = validate_database(database)
    return [
        f"DROP QUOTA IF EXISTS `quota_{tenant}`",
        f"DROP ROW POLICY IF EXISTS `tenant_{tenant}` ON `{db}`.events, `{db}`.sessions_agg, "
        f"`{db}`.dlq, `{db}`.checkpoints",
        f"DROP USER IF EXISTS `{analyst_user_name(tenant)}`",
    ]


def create_analyst_user(
    store: ClickHouseStore, tenant_id: str, password: str, limits: AnalystLimits = AnalystLimits()
) -> str:
    """Create the analyst for tenant_id on a server; returns the user name."""
    if store.embedded:
        raise ConfigError(
            "analyst users need a ClickHouse server: chDB has no users, row policies or quotas"
        )
    digest = hashlib.sha256(password.encode()).hexdigest()
    for statement in analyst_user_sql(tenant_id, digest, database=store.database, limits=limits):
        store.command(statement)
    user = analyst_user_name(tenant_id)
    logger.info("created analyst user %s for tenant %s", user, tenant_id)
    return user
