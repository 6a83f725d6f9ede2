"""Settings: one place reads the environment; bad values are one-line ConfigErrors."""

from __future__ import annotations

from pathlib import Path

import pytest

from agenttrail.config import load_settings
from agenttrail.errors import ConfigError


def test_defaults_follow_the_design(tmp_path: Path) -> None:
    s = load_settings({}, dotenv=tmp_path / "missing.env")
    assert s.kafka_bootstrap is None
    assert s.clickhouse_url == "chdb:///.agenttrail/clickhouse"
    assert (s.retention_days, s.api_port, s.partitions, s.auth_disabled) == (90, 3400, 4, False)
    assert s.embedder == "minilm"


def test_environment_beats_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nAGENTTRAIL_RETENTION_DAYS=30\n"
                        "AGENTTRAIL_API_PORT='4000'\nAGENTTRAIL_PARTITIONS=8\n")
    s = load_settings({"AGENTTRAIL_PARTITIONS": "2", "AGENTTRAIL_AUTH_DISABLED": "true",
                       "AGENTTRAIL_HOME": str(tmp_path / "h"), "AGENTTRAIL_EMBEDDER_THREADS": "1"}, dotenv=env_file)
    assert (s.retention_days, s.api_port, s.partitions, s.auth_disabled) == (30, 4000, 2, True)
    assert s.clickhouse_url == f"chdb:///{tmp_path / 'h'}/clickhouse"
    assert s.extra == {"embedder_threads": "1"}


@pytest.mark.parametrize(("name", "value"), [("RETENTION_DAYS", "ninety"), ("RETENTION_DAYS", "0"),
                                             ("PARTITIONS", "-1"), ("API_PORT", "1.5")])
def test_bad_numbers_are_config_errors(tmp_path: Path, name: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({f"AGENTTRAIL_{name}": value}, dotenv=None)
    assert f"AGENTTRAIL_{name}" in str(err.value)
