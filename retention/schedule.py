"""Cron expressions of retention policies, turned into arq's ``cron()`` fields.

Five fields ``minute hour day-of-month month day-of-week`` as in crontab(5), or six with a
leading ``second`` field (``*/5 * * * * *``: every five seconds; useful in tests). Each field is
``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma-separated list of
those. Day of week is 0-7 with 0 and 7 both Sunday; names are not accepted. crontab ORs the
day-of-month and day-of-week fields when both are restricted, arq ANDs them: a schedule that
restricts both is refused rather than run on surprising days.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class InvalidSchedule(ValueError):
    """The cron expression cannot be parsed, or asks for something arq would run differently."""


_BOUNDS = {
    "second": (0, 59),
    "minute": (0, 59),
    "hour": (0, 23),
    "day": (1, 31),
    "month": (1, 12),
    "weekday": (0, 7),
}


@dataclass(frozen=True)
class CronFields:
    """The schedule as arq's ``cron()`` keyword arguments (``None``: any value)."""

    second: frozenset[int]
    minute: frozenset[int] | None
    hour: frozenset[int] | None
    day: frozenset[int] | None
    month: frozenset[int] | None
    weekday: frozenset[int] | None  # arq's numbering: Monday = 0

    def as_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``arq.cron.cron`` (sets, as arq expects)."""
        fields = {
            "second": self.second,
            "minute": self.minute,
            "hour": self.hour,
            "day": self.day,
            "month": self.month,
            "weekday": self.weekday,
        }
        return {name: set(value) for name, value in fields.items() if value is not None}


def parse_cron(expression: str) -> CronFields:
    """Parse a five- or six-field cron expression; raise :class:`InvalidSchedule` if bad."""
    parts = expression.split()
    if len(parts) == 5:
        parts = ["0", *parts]
    if len(parts) != 6:
        raise InvalidSchedule(f"{expression!r}: expected 5 fields (or 6 with seconds first)")
    names = ("second", "minute", "hour", "day", "month", "weekday")
    values = {name: _field(name, part, expression) for name, part in zip(names, parts, strict=True)}
    if values["day"] is not None and values["weekday"] is not None:
        raise InvalidSchedule(
            f"{expression!r}: restrict day of month or day of week, not both "
            "(crontab would OR them, arq ANDs them)"
        )
    weekday = values["weekday"]
    if weekday is not None:  # crontab: 0 and 7 are Sunday; arq: Monday is 0, Sunday 6
        weekday = frozenset((value + 6) % 7 for value in weekday)
    second = values["second"]
    return CronFields(
        second=second if second is not None else frozenset(range(60)),
        minute=values["minute"],
        hour=values["hour"],
        day=values["day"],
        month=values["month"],
        weekday=weekday,
    )


def _field(name: str, text: str, expression: str) -> frozenset[int] | None:
    low, high = _BOUNDS[name]
    if text == "*":
        return None
    chosen: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if base == "*":
                start, end = low, high
            elif "-" in base:
                start_text, end_text = base.split("-", 1)
                start, end = int(start_text), int(end_text)
            else:
                start = end = int(base)
                if step_text:
                    end = high
        except ValueError:
            raise InvalidSchedule(f"{expression!r}: bad {name} field {text!r}") from None
        if step < 1 or not low <= start <= end <= high:
            raise InvalidSchedule(f"{expression!r}: {name} {item!r} outside {low}-{high}")
        chosen.update(range(start, end + 1, step))
    return frozenset(chosen)
