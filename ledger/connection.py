"""One way to reach Redis for every process: a plain URL, or a Sentinel-managed master.

Every process (the workers' arq pool and their redis-py client, the intake, the CLI, the
reconciler, the dashboard) gets its Redis client here, from its settings:

- **URL mode** (the default): ``FCD_REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``).
- **Sentinel mode**: ``FCD_REDIS_SENTINELS`` (``host:port`` of each Sentinel) and
  ``FCD_REDIS_SENTINEL_MASTER`` (the name they monitor), with ``FCD_REDIS_DB`` and the master's
  ``FCD_REDIS_PASSWORD``. Clients ask the Sentinels for the master's address whenever they open a
  connection (redis-py's :class:`~redis.asyncio.sentinel.SentinelConnectionPool`); after a
  fail-over a connection to the old master fails once (``READONLY`` or closed by the Sentinels'
  ``CLIENT KILL``) and the next one goes to the promoted replica. arq gets the same target
  through its own ``RedisSettings(sentinel=True, sentinel_master=…)``.

Nothing here logs; errors name the variables, never a password.
"""

from __future__ import annotations

from typing import Any

from arq.connections import RedisSettings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from ledger.settings import BaseServiceSettings


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-managed pool that, at its cap, waits for a connection instead of failing
    (what the intake uses in URL mode too)."""


class SentinelMasterRedis(Redis):
    """A client of the Sentinel-managed master that also closes its connections to the
    Sentinels when it is closed (redis-py leaves them open)."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await close_sentinels(self)


async def close_sentinels(redis: Redis) -> None:
    """Close a Sentinel-managed client's connections to the Sentinels (nothing in URL mode).
    For clients made elsewhere, such as arq's pool from :func:`arq_redis_settings`."""
    pool = redis.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()


def redis_client(
    settings: BaseServiceSettings,
    *,
    max_connections: int | None = None,
    blocking_timeout: float | None = None,
) -> Redis:
    """This process's Redis client for ``settings`` (URL or Sentinel mode).

    ``max_connections`` caps the pool; with ``blocking_timeout`` a caller at the cap waits up to
    that many seconds for a connection (then ``ConnectionError``) instead of failing at once.
    Nothing connects until the first command.
    """
    sentinels = settings.sentinel_addresses()
    if not sentinels:
        if blocking_timeout is not None:
            pool = BlockingConnectionPool.from_url(
                settings.redis_url,
                max_connections=max_connections or 50,
                timeout=blocking_timeout,
            )
            return Redis(connection_pool=pool)
        plain: Redis
        if max_connections is not None:
            plain = Redis.from_url(settings.redis_url, max_connections=max_connections)
        else:
            plain = Redis.from_url(settings.redis_url)
        return plain
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels),
        # for the Sentinels only: the master's connections keep URL mode's defaults (no read
        # timeout: the webhook inbox blocks on XREADGROUP)
        sentinel_kwargs={"socket_timeout": 5.0, "socket_connect_timeout": 2.0},
    )
    kwargs: dict[str, Any] = {"db": settings.redis_db}
    if settings.redis_password is not None:
        kwargs["password"] = settings.redis_password.get_secret_value()
    pool_class: type[SentinelConnectionPool] = SentinelConnectionPool
    if blocking_timeout is not None:
        pool_class = BlockingSentinelConnectionPool
        kwargs["max_connections"] = max_connections or 50
        kwargs["timeout"] = blocking_timeout
    elif max_connections is not None:
        kwargs["max_connections"] = max_connections
    client: Redis = manager.master_for(
        settings.redis_sentinel_master,
        redis_class=SentinelMasterRedis,
        connection_pool_class=pool_class,
        **kwargs,
    )
    return client


def arq_redis_settings(settings: BaseServiceSettings) -> RedisSettings:
    """arq's own connection settings for the same Redis (``sentinel=True`` in Sentinel mode).

    arq's ``__repr__`` of these would show the password: never log the object.
    """
    sentinels = settings.sentinel_addresses()
    if not sentinels:
        return RedisSettings.from_dsn(settings.redis_url)
    password = settings.redis_password
    return RedisSettings(
        host=list(sentinels),
        database=settings.redis_db,
        password=None if password is None else password.get_secret_value(),
        sentinel=True,
        sentinel_master=settings.redis_sentinel_master,
    )


def error_code(exc: BaseException) -> str:
    """A Redis error's code (``NOREPLICAS``, ``READONLY``, ``LOADING``…) or its class name, for
    log lines: never the full text, which can quote a command's arguments."""
    text = str(exc).strip()
    word = text.split(" ", 1)[0] if text else ""
    return word if word.isupper() and word.isalpha() else type(exc).__name__
