"""Reading METERING_* settings."""

from __future__ import annotations

import pytest

from libs.config import ConfigError
from services.metering.config import MeteringConfig

DATABASE_URL = "postgresql://metering:s3cret@db.internal:5433/gateway"


def test_defaults_need_only_database_url() -> None:
    config = MeteringConfig.from_env({"METERING_DATABASE_URL": DATABASE_URL})

    assert config.database_url == DATABASE_URL
    assert config.listen == "127.0.0.1:50054"
    assert config.metrics_port == 9104
    assert config.redis_url is None
    assert config.rpm_limit == 0
    assert config.tpm_limit == 0
    assert config.drain_s == 5.0


def test_reads_every_variable() -> None:
    config = MeteringConfig.from_env(
        {
            "METERING_DATABASE_URL": DATABASE_URL,
            "METERING_LISTEN": "0.0.0.0:6000",
            "METERING_METRICS_PORT": "0",
            "METERING_REDIS_URL": "redis://:pw@cache:6380/2",
            "METERING_REDIS_PREFIX": "gw:",
            "METERING_RPM_LIMIT": "60",
            "METERING_TPM_LIMIT": "90000",
            "METERING_RESERVATION_TTL_S": "30",
            "METERING_OUTBOX_MAX_ROWS": "10",
            "METERING_FLUSH_TIMEOUT_S": "2",
            "METERING_DRAIN_S": "0",
            "METERING_LOG_LEVEL": "debug",
        }
    )

    assert config.listen == "0.0.0.0:6000"
    assert config.metrics_port is None
    assert config.redis_url == "redis://:pw@cache:6380/2"
    assert config.redis_prefix == "gw:"
    assert config.rpm_limit == 60
    assert config.tpm_limit == 90000
    assert config.reservation_ttl_s == 30.0
    assert config.outbox_max_rows == 10
    assert config.flush_timeout_s == 2.0
    assert config.drain_s == 0.0
    assert config.log_level == "DEBUG"


def test_missing_database_url_names_variable() -> None:
    with pytest.raises(ConfigError, match="METERING_DATABASE_URL"):
        MeteringConfig.from_env({})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("METERING_RPM_LIMIT", "-1"),
        ("METERING_TPM_LIMIT", "many"),
        ("METERING_LISTEN", "50054"),
        ("METERING_METRICS_PORT", "70000"),
        ("METERING_RESERVATION_TTL_S", "0"),
        ("METERING_OUTBOX_MAX_ROWS", "0"),
        ("METERING_DRAIN_S", "-2"),
        ("METERING_LOG_LEVEL", "loud"),
        ("METERING_REDIS_URL", "cache:6379"),
    ],
)
def test_invalid_value_names_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        MeteringConfig.from_env({"METERING_DATABASE_URL": DATABASE_URL, name: value})


def test_invalid_database_url_hides_password() -> None:
    with pytest.raises(ConfigError, match="METERING_DATABASE_URL") as caught:
        MeteringConfig.from_env({"METERING_DATABASE_URL": "host=db password=s3cret port"})

    assert "s3cret" not in str(caught.value)


def test_summary_has_no_passwords() -> None:
    config = MeteringConfig.from_env(
        {"METERING_DATABASE_URL": DATABASE_URL, "METERING_REDIS_URL": "redis://:pw@cache:6380/2"}
    )

    summary = config.summary()

    assert summary["database"] == "db.internal:5433/gateway"
    assert summary["redis"] == "redis://cache:6380/2"
    assert "s3cret" not in repr(summary)
    assert "pw@" not in repr(summary)
