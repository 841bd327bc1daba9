"""The data of ``k8s.cronjob_runs`` (issue 16.3): what it stores and the backup analyzer reads.

Pure pydantic, no I/O. Every field has a default, so a bundle written by hand (rule tests) or
stored before a field existed still reads.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from medic.collectors.output_base import Out

# complete | failed (the Job's own conditions), suspended (spec.suspend), running otherwise
JobState = Literal["complete", "failed", "running", "suspended"]


class CronJobInfo(Out):
    name: str = ""
    namespace: str = ""
    schedule: str | None = None
    time_zone: str | None = None
    suspend: bool = False
    concurrency_policy: str | None = None
    last_schedule: str | None = None
    last_successful: str | None = None  # status.lastSuccessfulTime
    active: int = 0  # Jobs running now (status.active)


class JobCondition(Out):
    type: str | None = None
    status: str | None = None
    reason: str | None = None
    message: str | None = None


class JobRun(Out):
    name: str | None = None
    created: str | None = None
    manual: bool = False  # created by hand (kubectl create job --from, or Medic), not by the schedule
    state: JobState | None = None
    start: str | None = None
    completion: str | None = None
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    conditions: list[JobCondition] = Field(default_factory=list)  # those with status True


class ContainerExit(Out):
    name: str | None = None
    exit_code: int | None = None
    reason: str | None = None  # terminated, else waiting
    message: str | None = None
    restarts: int = 0


class JobPod(Out):
    name: str | None = None
    job: str | None = None
    phase: str | None = None
    reason: str | None = None
    created: str | None = None
    containers: list[ContainerExit] = Field(default_factory=list)


class LogTail(Out):
    pod: str | None = None
    container: str | None = None
    lines: list[str] = Field(default_factory=list)
    error: str | None = None


class EventObject(Out):
    kind: str | None = None
    name: str | None = None


class JobEvent(Out):
    type: str | None = None
    reason: str | None = None
    message: str | None = None
    object: EventObject = Field(default_factory=EventObject)
    count: int = 1
    last_seen: str | None = None


class CronJobRunsOutput(Out):
    cronjob: CronJobInfo = Field(default_factory=CronJobInfo)
    jobs: list[JobRun] = Field(default_factory=list)  # newest first
    jobs_total: int = 0  # all the CronJob's Jobs, beyond the ``max_jobs`` shown
    pods: list[JobPod] = Field(default_factory=list)  # newest first
    logs: list[LogTail] = Field(default_factory=list)
    events: list[JobEvent] = Field(default_factory=list)  # newest first
    events_complete: bool = True  # the namespace's events were read to their end
    alert_jobs: list[str] = Field(default_factory=list)  # the ``job_name`` labels of the incident's alerts
