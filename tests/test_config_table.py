"""The README's configuration table lists exactly the settings the code reads, with their defaults."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from ledger.settings import BaseServiceSettings
from producer.http.settings import IntakeSettings
from producer.settings import ProducerSettings
from worker.settings import WorkerSettings

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\|\s*`(FCD_[A-Z0-9_]+)`\s*\|\s*([^|]*?)\s*\|", re.MULTILINE)
SETTINGS_CLASSES: list[type[BaseSettings]] = [
    BaseServiceSettings,
    ProducerSettings,
    IntakeSettings,
    WorkerSettings,
]


def _documented() -> dict[str, str]:
    return dict(ROW.findall(README.read_text()))


def _in_code() -> dict[str, str]:
    fields: dict[str, str] = {}
    for cls in SETTINGS_CLASSES:
        for name, field in cls.model_fields.items():
            default = "(required)" if field.is_required() else field.default
            if hasattr(default, "value"):
                default = default.value
            fields[f"FCD_{name.upper()}"] = "" if default is None else str(default)
    return fields


def test_every_setting_is_documented_and_nothing_else() -> None:
    """Names in the README table equal the fields of the settings classes."""
    assert sorted(_documented()) == sorted(_in_code())


def test_documented_defaults_match_code() -> None:
    """Each row's default column shows the code's default (blank for none)."""
    documented = _documented()
    for name, default in _in_code().items():
        assert documented[name].strip("`") == default, name
