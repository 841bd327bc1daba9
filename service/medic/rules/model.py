"""The rule schema (``rules/*.yaml``)."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from medic.domain.alert import AlertStatus
from medic.domain.durations import Duration
from medic.rules.matchers import Matcher, MatcherError, matches_all, parse_matchers

RuleMode = Literal["auto", "approve", "dry-run", "off"]
_NAME = re.compile(r"^[a-z0-9]([a-z0-9\-_.]*[a-z0-9])?$")


class Budget(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(1, ge=0)
    per: Duration = timedelta(hours=1)


class Requirements(BaseModel):
    """Action preconditions a rule asks for on top of the action's own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recent_rollout: Duration | None = None  # the current revision must be younger than this
    previous_revision_healthy: bool = False


class Remediation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str
    mode: RuleMode = "dry-run"
    cooldown: Duration = timedelta(minutes=30)
    budget: Budget = Budget()
    require: Requirements = Requirements()
    when: list[str] = Field(
        default_factory=list,
        description="finding codes that justify the action; empty = any finding that suggests it",
    )


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    description: str = ""
    matchers: list[str] = Field(min_length=1)
    status: list[AlertStatus] = Field(default_factory=lambda: list[AlertStatus](["firing"]))
    playbook: str | None = None
    continue_: bool = Field(False, alias="continue")
    severity: Literal["info", "warning", "critical"] | None = None
    remediation: Remediation | None = None
    notify: list[str] = Field(default_factory=list)

    _parsed: list[Matcher] = PrivateAttr(default_factory=list)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("use lower-case letters, digits, '-', '_' and '.'")
        return value

    @field_validator("matchers")
    @classmethod
    def _check_matchers(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                parse_matchers(text)
            except MatcherError as exc:
                raise ValueError(str(exc)) from exc
        return value

    @model_validator(mode="after")
    def _parse(self) -> Rule:
        self._parsed = [m for text in self.matchers for m in parse_matchers(text)]
        if self.remediation is not None and self.playbook is None:
            raise ValueError("a rule with a remediation needs a playbook that defines the action")
        return self

    @property
    def parsed_matchers(self) -> list[Matcher]:
        return self._parsed

    def matches(self, labels: dict[str, str]) -> bool:
        return matches_all(self._parsed, labels)

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "playbook": self.playbook, "matchers": self.matchers}
