"""The one loader of the project's Lua scripts: ``.lua`` files beside the Python that runs them.

Every atomic step in Redis is a script file in a ``lua/`` folder of its package (``ledger/lua``,
``events/lua``, ``worker/ratelimit/lua``...). A script names what it needs from the shared
preludes with a first-lines directive::

    --! include materialise

which puts ``ledger/lua/prelude/materialise.lua`` (or the package's own ``prelude/`` file of that
name) in front of it. Scripts take their inputs as named locals at the top (``local req_key =
KEYS[1]``) and structured arguments as one JSON object (``cjson.decode(ARGV[1])``), so no script
indexes ``ARGV[10]`` and no JSON is built by splicing strings.

:func:`register` returns redis-py's ``AsyncScript`` (``EVALSHA``, falling back to ``EVAL`` and
re-loading after a server restart or ``SCRIPT FLUSH``).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_INCLUDE = re.compile(r"^--!\s*include\s+([a-z_]+)\s*$", re.MULTILINE)


@cache
def script_text(package: str, name: str) -> str:
    """The full text of ``<package>/lua/<name>.lua`` with its includes in front, once each."""
    folder = resources.files(package).joinpath("lua")
    body = folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
    parts: list[str] = []
    for include in dict.fromkeys(_INCLUDE.findall(body)):
        parts.append(_prelude(package, include))
    parts.append(_INCLUDE.sub("", body))
    return "\n".join(parts)


def _prelude(package: str, name: str) -> str:
    for owner in (package, "ledger"):
        candidate = resources.files(owner).joinpath("lua", "prelude", f"{name}.lua")
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(f"no Lua prelude {name!r} in {package} or ledger")


def register(redis: Redis, package: str, name: str) -> AsyncScript:
    """``redis.register_script`` for ``<package>/lua/<name>.lua``."""
    return redis.register_script(script_text(package, name))


def params(**values: Any) -> str:
    """The JSON object a script reads with ``cjson.decode(ARGV[1])``.

    Numbers whose precision matters (unix seconds with microseconds, scores) should be passed
    as strings: Lua's cjson prints numbers with 14 significant digits.
    """
    return json.dumps(values, separators=(",", ":"))
