"""Which Redis am I on: the location every process logs and every screen shows, never with a
password, and the loud warning when the built-in default is used outside the demo."""

from __future__ import annotations

import structlog

from ledger.logging import announce_redis
from ledger.settings import DEFAULT_REDIS_URL, BaseServiceSettings, redis_location


def test_location_keeps_host_port_db_and_drops_the_password() -> None:
    """Host, port and db survive; a password or user is shown as *** only."""
    secret = redis_location("redis://:hunter2@cache.internal:6380/3")
    assert str(secret) == "redis://***@cache.internal:6380/3" and "hunter2" not in repr(secret)
    assert secret.log_fields() == {
        "redis_host": "cache.internal",
        "redis_port": 6380,
        "redis_db": 3,
    }
    assert str(redis_location("rediss://user:pw@h:1/0")) == "rediss://***@h:1/0"
    assert str(redis_location("redis://localhost")) == "redis://localhost/0"
    assert str(redis_location("unix:///run/redis.sock?db=2")) == "unix:///run/redis.sock/2"
    assert str(redis_location("redis://h:notaport/0")) == "redis://?/0"


def test_default_url_outside_the_demo_warns_loudly() -> None:
    """Every process logs redis.target; with FCD_REDIS_URL left at the default (and FCD_DEMO not
    set) it also logs redis.default_url at warning level; the demo and a set URL do not."""
    cases = [
        (
            BaseServiceSettings(redis_url=DEFAULT_REDIS_URL, demo=False),
            ["redis.target", "redis.default_url"],
        ),
        (BaseServiceSettings(redis_url=DEFAULT_REDIS_URL, demo=True), ["redis.target"]),
        (
            BaseServiceSettings(redis_url="redis://:pw@prod-redis:6379/1", demo=False),
            ["redis.target"],
        ),
    ]
    for settings, expected in cases:
        with structlog.testing.capture_logs() as logs:
            announce_redis(settings, "worker:urgent")
        assert [e["event"] for e in logs] == expected
        assert all("pw@" not in str(e) for e in logs)
        assert logs[0]["role"] == "worker:urgent" and "redis_host" in logs[0]
    with structlog.testing.capture_logs() as logs:
        announce_redis(BaseServiceSettings(redis_url=DEFAULT_REDIS_URL, demo=False), "intake")
    warning = logs[1]
    assert warning["log_level"] == "warning" and "FCD_REDIS_URL is not set" in warning["message"]
