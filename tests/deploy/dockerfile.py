"""A small reader of deploy/Dockerfile for the structural tests (no Docker engine runs here).

It understands what the Dockerfile uses: comments, ``\\`` continuations, ``ARG`` before the first
``FROM``, ``FROM image [AS name]`` and ``COPY [--from=stage] src... dest``. A stage's *chain* is
the stage, the stages it is built ``FROM`` and the stages it copies from, recursively: everything
that can end up in its image.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    @property
    def words(self) -> list[str]:
        return shlex.split(self.args)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def copies(self) -> list[tuple[str | None, list[str]]]:
        """``(from stage or None for the build context, sources)`` of each COPY."""
        result = []
        for copy in self.all("COPY"):
            words = copy.words
            origin = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            paths = [w for w in words if not w.startswith("--")]
            result.append((origin, paths[:-1]))
        return result


def instructions(text: str) -> list[Instruction]:
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, args = line.strip().partition(" ")
            result.append(Instruction(keyword.upper(), args.strip()))
    return result


def stages(text: str) -> dict[str, Stage]:
    """The stages in file order (a dict keeps it); unnamed stages are named by their index."""
    result: dict[str, Stage] = {}
    current: Stage | None = None
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.words
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(result))
            current = Stage(name=name, base=words[0])
            result[name] = current
        elif current is not None:
            current.instructions.append(instruction)
    return result


def chain(all_stages: dict[str, Stage], name: str) -> list[Stage]:
    """``name`` and every stage whose files can reach its image."""
    seen: list[str] = []
    todo = [name]
    while todo:
        stage = all_stages[todo.pop()]
        if stage.name in seen:
            continue
        seen.append(stage.name)
        todo += [stage.base] if stage.base in all_stages else []
        todo += [origin for origin, _ in stage.copies() if origin in all_stages]
    return [all_stages[n] for n in seen]


def context_sources(stage_chain: list[Stage]) -> list[str]:
    """Every path a chain copies from the build context."""
    return [
        src
        for stage in stage_chain
        for origin, srcs in stage.copies()
        if origin is None
        for src in srcs
    ]
