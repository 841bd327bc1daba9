"""Read the Dockerfile and .dockerignore without a Docker engine (none on this machine).

``parse_dockerfile`` joins continuation lines, drops comments and splits the file into stages;
``dockerignore_excludes`` applies .dockerignore the way the builder does (patterns in order, the
last match wins, ``!`` re-includes, a directory pattern covers everything under it).
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    args: str
    flags: dict[str, str] = field(default_factory=dict)

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form ENTRYPOINT/CMD, else None."""
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) else None


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV must use key=value: {ins.args!r}"
                out[key] = value
        return out


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    def resolve(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.args.get(m[1] or m[2], m[0]), text)


_FLAG = re.compile(r"^--([a-z-]+)(?:=(\S*))?\s+")


def parse_dockerfile(path: Path) -> Dockerfile:
    logical: list[str] = []
    current = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by the builder
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    assert not current, "the Dockerfile ends inside a line continuation"

    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        flags: dict[str, str] = {}
        while m := _FLAG.match(rest):
            flags[m[1]] = m[2] or ""
            rest = rest[m.end() :]
        if keyword == "ARG" and not stages:
            arg, _, default = rest.partition("=")
            args[arg] = default
            continue
        if keyword == "FROM":
            parts = rest.split()
            stage_name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], stage_name))
            continue
        assert stages, f"{keyword} before the first FROM"
        stages[-1].instructions.append(Instruction(keyword, rest, flags))
    df = Dockerfile(args, stages)
    for stage in stages:
        stage.base = df.resolve(stage.base)
    return df


def _matches(pattern: str, path: str) -> bool:
    pattern = pattern.strip("/")
    if pattern.startswith("**/"):
        tail = pattern[3:]
        parts = path.split("/")
        return any(_matches(tail, "/".join(parts[i:])) for i in range(len(parts)))
    parts = path.split("/")
    # a pattern matching a directory covers everything below it
    return any(fnmatch.fnmatchcase("/".join(parts[: i + 1]), pattern) for i in range(len(parts)))


def dockerignore_excludes(dockerignore: Path, path: str) -> bool:
    excluded = False
    for raw in dockerignore.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if _matches(line.lstrip("!"), path):
            excluded = not negate
    return excluded
