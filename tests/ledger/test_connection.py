"""One Redis connection factory (ledger.connection): URL mode and Sentinel mode, clear errors,
and clients that follow a real Sentinel fail-over to the promoted replica."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from arq.connections import create_pool

from control.overview import redis_location_of
from devenv.sentinel import SentinelCluster, sentinel_cluster
from ledger.connection import arq_redis_settings, close_sentinels, redis_client
from ledger.settings import BaseServiceSettings, InvalidSettings, load_settings

SECRET = "hunter2-not-for-logs"


@pytest.fixture(scope="module")
def cluster() -> Iterator[SentinelCluster]:
    with sentinel_cluster() as running:
        yield running


def sentinel_settings(cluster: SentinelCluster, **extra: object) -> BaseServiceSettings:
    return BaseServiceSettings(
        redis_url="",
        redis_sentinels=cluster.sentinel_addresses,
        redis_sentinel_master=cluster.master_name,
        **extra,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"FCD_REDIS_SENTINELS": "sentinel-1"}, ["FCD_REDIS_SENTINELS", "entry 1"]),
        ({"FCD_REDIS_SENTINELS": "a:1,b:99999"}, ["FCD_REDIS_SENTINELS", "entry 2"]),
        ({"FCD_REDIS_SENTINELS": "a:1"}, ["FCD_REDIS_SENTINEL_MASTER"]),
        (
            {"FCD_REDIS_SENTINELS": "a:1", "FCD_REDIS_SENTINEL_MASTER": "m",
             "FCD_REDIS_URL": "redis://cache:6379/0"},
            ["FCD_REDIS_URL", "FCD_REDIS_SENTINELS", "not both"],
        ),
        ({"FCD_REDIS_PASSWORD": SECRET}, ["FCD_REDIS_PASSWORD", "FCD_REDIS_SENTINELS"]),
        ({"FCD_REDIS_DB": "3"}, ["FCD_REDIS_DB"]),
    ],
)  # fmt: skip
def test_bad_redis_settings_name_the_variable_and_never_the_password(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], names: list[str]
) -> None:
    """Each inconsistent combination is refused with a message naming what to change."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(InvalidSettings) as caught:
        load_settings(BaseServiceSettings)
    message = str(caught.value)
    for name in names:
        assert name in message
    assert SECRET not in message


def test_sentinel_location_never_shows_the_password() -> None:
    """Logs and screens show the Sentinels, the master name and the db, not the password."""
    settings = BaseServiceSettings(
        redis_sentinels="s1:26379, s2:26379",
        redis_sentinel_master="ledger",
        redis_password=SECRET,
        redis_db=2,
    )
    assert str(settings.redis_location()) == "sentinel://***@s1:26379,s2:26379/ledger/2"
    assert settings.sentinel_addresses() == (("s1", 26379), ("s2", 26379))
    assert not settings.uses_default_redis
    arq = arq_redis_settings(settings)
    assert (
        arq.sentinel
        and arq.sentinel_master == "ledger"
        and arq.host == [("s1", 26379), ("s2", 26379)]
    )
    assert arq.database == 2 and arq.password == SECRET


@pytest.mark.integration
async def test_clients_follow_a_sentinel_fail_over(cluster: SentinelCluster) -> None:
    """redis-py and arq clients built from the settings reach the master the Sentinels name;
    after SENTINEL FAILOVER the same client objects write to the promoted replica, and what
    was acknowledged before is there (min-replicas-to-write 1: nothing lost)."""
    settings = sentinel_settings(cluster)
    client = redis_client(settings)
    blocking = redis_client(settings, max_connections=4, blocking_timeout=5)
    arq = await create_pool(arq_redis_settings(settings))
    try:
        first = cluster.primary_port()
        await client.set("fcd-test:before", "1")
        assert await arq.get("fcd-test:before") == b"1"
        assert await blocking.get("fcd-test:before") == b"1"
        location = redis_location_of(client)
        assert location.scheme == "sentinel" and f"@127.0.0.1:{first}" in str(location)

        promoted = await asyncio.to_thread(cluster.failover)
        assert promoted != first

        async def write_until_accepted(name: str, redis: object) -> None:
            for _ in range(200):  # the first command after the switch may fail once
                try:
                    await redis.set(name, "1")  # type: ignore[attr-defined]
                    return
                except Exception:  # noqa: BLE001  ConnectionError / NOREPLICAS while it settles
                    await asyncio.sleep(0.1)
            raise AssertionError(f"{name} never accepted after the fail-over")

        for name, redis in (("client", client), ("arq", arq), ("blocking", blocking)):
            await write_until_accepted(f"fcd-test:after:{name}", redis)
        direct = redis_client(BaseServiceSettings(redis_url=cluster.server_url(promoted)))
        try:
            for name in ("before", "after:client", "after:arq", "after:blocking"):
                assert await direct.get(f"fcd-test:{name}") == b"1", name
        finally:
            await direct.aclose()
        assert f"@127.0.0.1:{promoted}" in str(redis_location_of(client))
    finally:
        await client.aclose()
        await blocking.aclose()
        await arq.aclose()
        await close_sentinels(arq)
