"""Every key family the service can write to Redis, with its bound or its reason to have none.

:data:`FAMILIES` is the table. :func:`code_families` derives the families from the code itself,
so a new kind of key fails here until it is added with its bound:

- every f-string of the service packages that starts with a ``…prefix`` value (``P`` below is
  the key prefix, ``fcd:`` by default); a placeholder is written ``{name}``, and the request
  kinds' dynamic parts (``kind.key_family``, ``kind.status_index``) are expanded for every kind;
- an f-string built on another key (``f"{self.key(run_id)}:hist"``), resolved through
  :data:`DERIVED`;
- every name the rate limiter builds with ``RateLimiter._key`` (under its prefix ``P rl:``);
- every ``prefix .. '…'`` in the Lua scripts (it must start a family of the table);
- arq's own keys: every key constant of ``arq.constants``.

A pattern ending in ``:`` is a key prefix its callers complete (``AccountLock``'s). f-strings that
start with a prefix but are no Redis key are listed in :data:`NOT_KEYS` with what they are.

The bounds are then checked for real where that is cheap (:func:`test_written_keys_are_bounded`):
a run through the ledger, the webhook inbox, the limiter, the worker registry, an account lock
and the limiter snapshot on a real Redis, then every key under the test's prefix must belong to
a family of the table, every key of an expiring family must have a TTL, and every stream must be
within its cap (``tests/events/test_inbox_bounds.py`` checks the caps and their trimming at
length).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import arq.constants
from redis.asyncio import Redis

from control.overview import publish_limiter_snapshot
from control.workers import WorkerRegistry
from events.inbox import DEAD_LETTER_MAXLEN, INBOX_MAXLEN, WebhookInbox
from ledger.customer_models import CUSTOMER
from ledger.jobs import ARQ_JOB_KEY_PREFIX
from ledger.models import ACCOUNT
from ledger.reconcile import reconcile
from ledger.store import Ledger
from tests.ledger.operator_support import failed, submitted
from worker.ratelimit import AccountLock, RateBudget, RateLimiter

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = ("ledger", "control", "events", "retention", "producer", "worker")


class Bound(StrEnum):
    EXPIRES = "expires"  # every key has a TTL (checked where written below)
    CAPPED = "capped"  # a stream trimmed by MAXLEN ~ on every XADD
    FIXED = "fixed size"  # one key, or a fixed set of keys, with fields from finite sets
    LIVE = "work in flight"  # members leave when their work ends (or are pruned)
    PER_REQUEST = "per request"  # grows with requests: see PER_REQUEST_REASON
    KEPT = "kept"  # grows, slowly, with something rare; the reason says why it is kept


@dataclass(frozen=True)
class Family:
    bound: Bound
    why: str


# The ledger's per-request records: ledger.archiving moves a request, with every key below, to the
# archive once it has been terminal for FCD_ARCHIVE_AFTER (bench/ledger_memory.py: 0.6 B per
# archived request left in Redis; tests/ledger/test_archiving.py checks the keys are gone).
PER_REQUEST_REASON = "per-request record: moved to the archive FCD_ARCHIVE_AFTER after it ends"


def per_request(what: str) -> Family:
    return Family(Bound.PER_REQUEST, f"{what}; {PER_REQUEST_REASON}")


# -----------------------------------------------------------------------------------------------


def expires(why: str) -> Family:
    return Family(Bound.EXPIRES, why)


FAMILIES: dict[str, Family] = {
    # The ledger (ledger/store.py, ledger/customers.py, ledger/event_ids.py)
    "P req:{request_id}": per_request("an account request (hash)"),
    "P req:{request_id}:hist": per_request("its audit history (list)"),
    "P status:{status}": per_request("status index (zset): terminal statuses keep their ids"),
    "P acct:{account_id}:reqs": per_request("the account's finished requests (zset)"),
    "P acct:{account_id}:hist": per_request("records about the account itself (list)"),
    "P acct:{account_id}:active": Family(
        Bound.LIVE, "the account's one active request; deleted by the terminal transition"
    ),
    "P cust:{request_id}": per_request("a customer-level request (hash)"),
    "P cust:{request_id}:hist": per_request("its audit history (list)"),
    "P cust:status:{status}": per_request("customer-request status index (zset)"),
    "P cust:{parent_id}:children": per_request("a customer request's child requests (hash)"),
    "P customer:{customer_id}:reqs": per_request("the customer's requests (zset)"),
    "P intake:{service}:{event_id}": per_request("event-id record of a caller's event (hash)"),
    "P batch:{job_id}:alive": expires("a running batch job's heartbeat"),
    "P schema": Family(Bound.FIXED, "one string: the ledger's schema version"),
    "P schema:lock": expires("redis-py Lock while a migration runs"),
    "P reconcile:lock": expires("redis-py Lock while a reconcile pass runs"),
    "P archive:lock": expires("redis-py Lock while an archive pass runs (ledger.archiving)"),
    "P paused": Family(Bound.FIXED, "one string: the kill switch, while paused"),
    "P durability:probe": Family(
        Bound.FIXED, "one counter: the write FCD_DURABILITY=fsync waits on (ledger.durability)"
    ),
    # Webhooks (events/inbox.py, worker/events_catchup.py)
    "P webhook:inbox": Family(
        Bound.CAPPED, f"stream, MAXLEN ~ {INBOX_MAXLEN:,}; applied entries are deleted"
    ),
    "P webhook:dead": Family(
        Bound.CAPPED, f"stream, MAXLEN ~ {DEAD_LETTER_MAXLEN:,}; trimming counted and logged"
    ),
    "P webhook:seen:{event_id}": expires("an accepted event id, 30 days"),
    "P events:catchup:cursor": Family(Bound.FIXED, "one hash of three fields"),
    "P lock:": expires("AccountLock (redis-py Lock) key prefix: P lock:events-catchup"),
    "P lock:account:": expires("AccountLock key prefix: one Stripe call per account"),
    # Control: metrics, workers, limiter snapshot (control/)
    "P metrics:{family}": Family(
        Bound.FIXED,
        "one hash per counter family and histogram (control.metrics.FAMILIES, HISTOGRAMS); "
        "fields are label values from finite sets (status codes, configured services, "
        "endpoints, outcomes, Stripe event types, fixed buckets)",
    ),
    "P metrics:streams": Family(Bound.FIXED, "one hash, a field per capped stream"),
    "P worker:{worker_id}": expires("a worker's registry entry, 30 s after its last beat"),
    "P workers": Family(Bound.LIVE, "index of live workers; every beat drops the expired"),
    "P limiter:snapshot": expires("the published limiter snapshot"),
    # The rate limiter (worker/ratelimit/scripts.py), under P rl:
    "P rl:tat:ep:{endpoint}": expires("GCRA arrival time; endpoints are a fixed set"),
    "P rl:tat:ep:{protected}": expires("the protected endpoint's arrival time"),
    "P rl:tat:global": expires("GCRA arrival time of the global budget"),
    "P rl:leases": expires("zset of calls in flight, pruned by expiry on every acquire"),
    "P rl:adaptive": expires(
        "rate factor; expires once recovered (never with FCD_LIMITER_RECOVERY_PER_SECOND=0, "
        "when it is one hash of two fields)"
    ),
    "P rl:wait:urgent": expires("refused callers, pruned by wait:expiry"),
    "P rl:wait:urgent:read": expires("refused callers, pruned by wait:expiry"),
    "P rl:wait:bulk": expires("refused callers, pruned by wait:expiry"),
    "P rl:wait:bulk:read": expires("refused callers, pruned by wait:expiry"),
    "P rl:wait:expiry": expires("when to forget each refused caller"),
    "P rl:turn:bulk": expires("the bulk class of the last bulk grant, 10 s"),
    "P rl:stats": Family(Bound.FIXED, "one hash of four counters"),
    # Retention sweeps (retention/runs.py)
    "P sweep:{run_id}": Family(
        Bound.KEPT, "a sweep run's record (hash): one per run, a few a day; `fcd sweeps`"
    ),
    "P sweep:{run_id}:hist": Family(Bound.KEPT, "a sweep run's audit records (list)"),
    "P sweeps": Family(Bound.KEPT, "index of sweep runs (zset)"),
    "P sweeps:active": Family(Bound.LIVE, "runs not yet terminal"),
    "P sweep:{run_id}:alive": expires("a running sweep's heartbeat"),
    "P sweep:lock:{policy}": expires("redis-py Lock while a policy's sweep runs"),
    "P sweep:slot:{policy}:{slot_ms}": expires("a scheduled run's claimed slot"),
    "P sweeps:recover:lock": expires("redis-py Lock while lost runs are recovered"),
    # arq's own keys (arq.constants); queues are FCD_QUEUE_NAME and FCD_BULK_QUEUE_NAME
    "arq:job:{job_id}": expires("the job record, PX FCD_JOB_EXPIRES_SECONDS"),
    "arq:in-progress:{job_id}": expires("held while a worker runs the job"),
    "arq:result:{job_id}": expires("the result, kept 3600 s (worker.app keep_result)"),
    "arq:retry:{job_id}": expires("the try count, 88400 s"),
    "arq:abort": Family(Bound.LIVE, "jobs to abort; arq prunes it after 60 s"),
    "{queue}": Family(Bound.LIVE, "the queue's jobs (zset): a job leaves when it ends"),
    "{queue}:health-check": expires("arq's health-check line"),
}

STREAM_CAPS = {"P webhook:inbox": INBOX_MAXLEN, "P webhook:dead": DEAD_LETTER_MAXLEN}

#: Keys built from another key (resolved by hand: the scan cannot follow the method).
DERIVED = {"{key(run_id)}:hist": "P sweep:{run_id}:hist"}  # SweepRuns._history_key

#: f-strings that start with a ``…prefix`` value but are no Redis key of their own.
NOT_KEYS = {
    "P .reenqueued": "audit event name (kind.event_prefix)",
    "P .status_changed": "audit event name (kind.event_prefix)",
    "P {sample}": "a /metrics line (series name + sample)",
    "P …{raw[-4:]}": "a masked secret in `fcd doctor`",
    "P cust:cr_*": "a SCAN pattern (migration reads P cust:{request_id})",
    "P rl:": "the limiter's key prefix (its keys are P rl:…)",
    "P {name}": "RateLimiter._key itself",
    "P {account_id}": "AccountLock's key: its caller's key prefix + a name",
}

#: arq's key constants and the family each one starts.
ARQ_KEYS = {
    "job_key_prefix": "arq:job:{job_id}",
    "in_progress_key_prefix": "arq:in-progress:{job_id}",
    "result_key_prefix": "arq:result:{job_id}",
    "retry_key_prefix": "arq:retry:{job_id}",
    "abort_jobs_ss": "arq:abort",
    "default_queue_name": "{queue}",
    "health_check_key_suffix": "{queue}:health-check",
}

_KIND_PARTS = {
    "self.kind.key_family": [ACCOUNT.key_family, CUSTOMER.key_family],
    "self.kind.status_index": [ACCOUNT.status_index, CUSTOMER.status_index],
}
_PLACEHOLDER_NAMES = {"status.value": "status"}
_LUA_PREFIX = re.compile(r"prefix\s*\.\.\s*'([^']*)'")


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = _dotted(node.value)
        return f"{inner}.{node.attr}" if inner else None
    return None


def _render(parts: list[ast.expr]) -> list[str]:
    """Literal text kept, placeholders as ``{name}``; a kind's dynamic part, once per kind."""
    rendered = [""]
    for part in parts:
        if isinstance(part, ast.Constant):
            choices = [str(part.value)]
        elif isinstance(part, ast.FormattedValue):
            name = _dotted(part.value) or ast.unparse(part.value)
            if name in _KIND_PARTS:
                choices = _KIND_PARTS[name]
            else:
                choices = ["{" + _PLACEHOLDER_NAMES.get(name, name.split(".")[-1]) + "}"]
        else:
            raise TypeError(f"unexpected f-string part {ast.dump(part)}")
        rendered = [head + choice for head in rendered for choice in choices]
    return rendered


def _is_prefix(node: ast.expr) -> bool:
    name = _dotted(node)
    return name is not None and name.split(".")[-1].endswith("prefix")


def _is_key_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and (_dotted(node.func) or "").endswith("key")


def code_families() -> set[str]:
    """What the service code writes (or names), rendered as the table writes families."""
    found: set[str] = set()
    for package in SERVICE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                found |= _families_of(node)
    return found


def _families_of(node: ast.AST) -> set[str]:
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        if isinstance(first, ast.FormattedValue) and _is_prefix(first.value):
            return {"P " + text for text in _render(node.values[1:])}
        if isinstance(first, ast.FormattedValue) and _is_key_call(first.value):
            return {text for text in _render(node.values)}
    is_limiter_key = (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "_key"
        and node.args
    )
    if is_limiter_key:
        assert isinstance(node, ast.Call)
        arg = node.args[0]
        if isinstance(arg, ast.Constant):
            return {f"P rl:{arg.value!s}"}
        assert isinstance(arg, ast.JoinedStr), ast.dump(arg)
        return {"P rl:" + text for text in _render(arg.values)}
    return set()


def lua_prefixes() -> set[str]:
    """Every ``prefix .. '…'`` of the service's Lua scripts, as ``P …``."""
    found = set()
    for package in SERVICE_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.lua")):
            found |= {"P " + m for m in _LUA_PREFIX.findall(path.read_text(encoding="utf-8"))}
    return found


def test_every_family_the_code_writes_is_in_the_table() -> None:
    """A new key family (or a renamed one) fails here until the table gives its bound."""
    written = {DERIVED.get(text, text) for text in code_families()} - set(NOT_KEYS)
    assert written - set(FAMILIES) == set(), "add these families (with a bound) to FAMILIES"
    unused_not_keys = set(NOT_KEYS) - code_families()
    assert not unused_not_keys, f"NOT_KEYS names what the code no longer has: {unused_not_keys}"
    assert set(DERIVED) <= code_families()
    for family in lua_prefixes():
        assert any(name.startswith(family) for name in FAMILIES), family


def test_the_table_names_only_families_the_code_writes() -> None:
    """No stale rows: every row is written by the service or by arq."""
    written = {DERIVED.get(text, text) for text in code_families()}
    stale = set(FAMILIES) - written - set(ARQ_KEYS.values())
    assert not stale, f"FAMILIES lists what nothing writes: {stale}"


def test_arqs_own_keys_are_all_in_the_table() -> None:
    """Every key constant of the arq release in use starts a family of the table."""
    constants = {
        name: value
        for name, value in vars(arq.constants).items()
        if isinstance(value, str) and value.startswith(("arq:", ":"))
    }
    assert set(constants) == set(ARQ_KEYS), "a new arq key: add it to ARQ_KEYS and FAMILIES"
    for name, family in ARQ_KEYS.items():
        assert family in FAMILIES
        literal = family.replace("{queue}", "").replace("{job_id}", "")
        assert literal == constants[name] or family == "{queue}", (name, family)


def test_every_family_has_a_bound_or_a_reason() -> None:
    for name, family in FAMILIES.items():
        assert family.why.strip(), name
        if family.bound == Bound.PER_REQUEST:
            assert PER_REQUEST_REASON in family.why, name


def _regex(family: str, prefix: str, queues: tuple[str, ...]) -> re.Pattern[str]:
    head = family.replace("P ", prefix, 1) if family.startswith("P ") else family
    pieces = re.split(r"(\{[a-z_]+\})", head)
    out = []
    for piece in pieces:
        if piece == "{queue}":
            out.append("(?:" + "|".join(map(re.escape, queues)) + ")")
        elif piece.startswith("{"):
            out.append(".+")
        else:
            out.append(re.escape(piece))
    tail = ".+" if family.endswith(":") else ""
    return re.compile("".join(out) + tail)


def family_of(key: str, prefix: str, queues: tuple[str, ...]) -> str | None:
    """The most specific family (most literal text) whose pattern the whole key matches."""
    matches = [name for name in FAMILIES if _regex(name, prefix, queues).fullmatch(key) is not None]
    return max(matches, key=lambda n: len(re.sub(r"\{[a-z_]+\}", "", n)), default=None)


async def _write_a_bit_of_everything(ledger: Ledger, redis: Redis) -> list[str]:
    """Real code paths writing many families; returns the arq job ids they created."""
    prefix = ledger.prefix
    jobs = [
        str((await failed(ledger, "fca_keys1")).job_id),
        str((await submitted(ledger, "fca_keys2")).job_id),
    ]
    await reconcile(ledger, lease_seconds=600)
    inbox = WebhookInbox(redis, prefix, claim_idle_ms=0, max_deliveries=1)
    await inbox.ensure_group()
    await inbox.accept("evt_keys", {"id": "evt_keys", "type": "ping"})

    async def failing(event: dict[str, Any]) -> str:
        raise ValueError("cannot apply")

    await inbox.process_once("host:1", failing, block_ms=10)  # dead-lettered
    await inbox.accept("evt_keys2", {"id": "evt_keys2", "type": "ping"})
    limiter = RateLimiter(
        redis,
        RateBudget(endpoint_rates={"disconnect": 20.0, "list": 20.0}, global_rate=20.0,
                   max_in_flight=4, reserve_ahead_seconds=0.0),
        key_prefix=f"{prefix}rl:",
        pause_key=f"{prefix}paused",
    )  # fmt: skip
    urgent = await limiter.acquire("disconnect")
    bulk = await limiter.acquire("list", priority="bulk")
    async with urgent, bulk:
        await limiter.report_rate_limited("list", "global-rate")
    await limiter.acquire("disconnect")  # a lease left held: it expires by itself
    await WorkerRegistry(redis, prefix).beat(
        "host:1", queue="urgent", jobs_running=0, max_jobs=1, started_at=1.0
    )
    await AccountLock(redis, "fca_keys1", key_prefix=f"{prefix}lock:account:").acquire()
    await publish_limiter_snapshot(redis, prefix, {"in_flight": 0})
    return jobs


async def test_written_keys_are_bounded(bulk_ledger: Ledger, redis: Redis) -> None:
    """Every key the run wrote belongs to a family of the table; every key of an expiring
    family has a TTL; the streams are within their caps; arq's job keys expire."""
    ledger = bulk_ledger
    jobs = await _write_a_bit_of_everything(ledger, redis)
    namespace = ledger.prefix.removesuffix("fcd:")
    keys = sorted(k.decode() for k in await redis.keys(f"{namespace}*"))
    seen: dict[str, list[str]] = {}
    for key in keys:
        family = family_of(key, ledger.prefix, ledger.queue_names)
        assert family is not None, f"{key} belongs to no family of the table"
        seen.setdefault(family, []).append(key)
    for family, members in seen.items():
        for key in members:
            ttl = await redis.pttl(key)
            if FAMILIES[family].bound == Bound.EXPIRES:
                assert ttl > 0, f"{key} ({family}) should expire"
            if await redis.type(key) == b"stream":
                assert FAMILIES[family].bound == Bound.CAPPED, key
                assert await redis.xlen(key) <= STREAM_CAPS[family] + 100  # ~: one node more
    expected = {
        "P webhook:seen:{event_id}",
        "P webhook:inbox",
        "P webhook:dead",
        "P worker:{worker_id}",
        "P lock:account:",
        "P limiter:snapshot",
        "P rl:leases",
        "P rl:adaptive",
        "P rl:tat:global",
        "P rl:tat:ep:{endpoint}",
        "P rl:stats",
        "P req:{request_id}",
        "P status:{status}",
        "{queue}",
    }
    assert expected <= set(seen), expected - set(seen)
    for job in jobs:
        assert await redis.pttl(ARQ_JOB_KEY_PREFIX + job) > 0
