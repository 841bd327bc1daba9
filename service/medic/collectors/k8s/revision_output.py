"""The data of ``k8s.revision_status``. Pure pydantic; every field defaulted (a bundle written by
hand still reads)."""

from __future__ import annotations

from pydantic import Field

from medic.collectors.output_base import Out


class RolloutProgress(Out):
    revision: int | None = None  # the Deployment's current revision
    desired: int | None = None
    updated: int | None = None
    ready: int | None = None
    available: int | None = None
    progressing_reason: str | None = None
    progressing_message: str | None = None
    deadline_exceeded: bool = False
    complete: bool = False
    paused: bool = False


class RevisionPod(Out):
    name: str = ""
    ready: bool = False
    restarts: int = 0
    waiting: str | None = None  # reason, e.g. CrashLoopBackOff
    last_terminated: str | None = None  # reason, e.g. OOMKilled, Error


class RevisionStatusOutput(Out):
    revision: int = 0
    replicaset: str = ""
    rollout: RolloutProgress = RolloutProgress()
    pods: list[RevisionPod] = Field(default_factory=list)
    pods_total: int = 0
