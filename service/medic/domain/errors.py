"""Medic's error hierarchy, in one place.

    MedicError
    ├── UsageError           the command line is wrong (the CLI exits 2, like argparse)
    ├── ConfigError          a settings, rule or playbook file is invalid (names file, rule, field, line;
    │   │                    or the env var), or Medic cannot use its data dir; the CLI exits 2
    │   └── ConfigErrors     several of them found in one pass (every one is reported)
    ├── InputError           a request or payload is invalid (becomes an HTTP 4xx problem+json)
    ├── StoreError           a state or incident store could not do what was asked (HTTP 5xx); a
    │   │                    write refused for its data keeps that error as its __cause__
    │   └── BackendUnavailable   Medic's own storage cannot serve for now (Redis/MongoDB out of
    │                        reach, the SQLite disk full or failing): wait and retry, no attempt
    │                        counted, nothing dead-lettered
    └── StepError            a collector or action failed; caught by the step executor and turned
        ├── NotConfigured    into an Evidence/Outcome status, never raised out of a step
        └── StepTimeout

Collectors and actions may raise StepError (or anything else): the runner turns it into a status.
"""

from __future__ import annotations


class MedicError(Exception):
    """Base of every error Medic raises on purpose."""


class UsageError(MedicError):
    """The command line asks for something that cannot be (a missing argument, a bad combination)."""


class ConfigError(MedicError):
    """Invalid configuration. Carries where: file, line, rule and field when known, or the env var."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        rule: str | None = None,
        field: str | None = None,
        env: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.rule = rule
        self.field = field
        self.env = env
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        elif self.env:
            where = f"env {self.env}"
        parts = [where] if where else []
        if self.rule:
            parts.append(f"{self.rule!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class ConfigErrors(ConfigError):
    """Several configuration errors found in one pass (``medic check`` shows them all)."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class InputError(MedicError):
    """Bad input from a client; becomes a 4xx problem+json."""

    def __init__(self, title: str, detail: str, *, status: int = 400, field: str | None = None):
        self.title = title
        self.detail = detail
        self.status = status
        self.field = field
        super().__init__(f"{title}: {detail}")


class StoreError(MedicError):
    """A store could not persist or read; callers answer 5xx (the sender retries)."""


class BackendUnavailable(StoreError):
    """Medic's own coordination store or incident store cannot be reached right now (not the
    item's fault: workers keep the item and retry later instead of counting an attempt)."""


class StepError(MedicError):
    """A collector or action failed in an expected way (backend refused, bad answer)."""


class NotConfigured(StepError):
    """The backend a step needs is not configured in this deployment."""


class StepTimeout(StepError):
    """A step ran out of its time budget."""
