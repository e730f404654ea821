"""A Dockerfile read into instructions: enough to check one without a container engine."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    """One instruction: `keyword` upper-cased, `args` the rest of its (joined) lines."""

    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT/CMD (ValueError for the shell form)."""
        value = json.loads(self.args)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{self.keyword} is not in exec form: {self.args}")
        return value


def parse(path: Path) -> list[list[Instruction]]:
    """The instructions of each build stage, in order (each stage starts at a FROM)."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are dropped
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        raise ValueError(f"{path}: the last instruction ends with a line continuation")
    stages: list[list[Instruction]] = []
    for line in lines:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            stages.append([])
        elif not stages:
            raise ValueError(f"{path}: {keyword} before the first FROM")
        stages[-1].append(instruction)
    return stages


def env(stage: list[Instruction]) -> dict[str, str]:
    """The variables the stage's ENV instructions set (`ENV K=V K2=V2` form)."""
    out: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for pair in shlex.split(instruction.args):
                key, sep, value = pair.partition("=")
                if not sep:
                    raise ValueError(f"use ENV KEY=VALUE, not the legacy form: {pair}")
                out[key] = value
    return out


def last(stage: list[Instruction], keyword: str) -> Instruction | None:
    """The stage's last `keyword` instruction (the one that takes effect), if any."""
    found = [i for i in stage if i.keyword == keyword]
    return found[-1] if found else None
