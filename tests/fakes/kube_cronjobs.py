"""The CronJob controller of the fake cluster (opt-in: ``CronJobs(cluster)``).

- :meth:`CronJobs.run` does what the controller does at a scheduled time: a Job
  ``<cronjob>-<scheduled time in unix minutes>`` from the ``jobTemplate``, controlled by the
  CronJob (ownerReference), annotated ``batch.kubernetes.io/cronjob-scheduled-timestamp``; the
  CronJob's ``status.lastScheduleTime`` is set.
- On every ``settle()``: ``status.active`` lists the CronJob's unfinished Jobs and
  ``status.lastSuccessfulTime`` is the newest ``completionTime`` of its complete ones (a Job
  created by hand from the CronJob counts too, as it is controlled by it).
"""

from __future__ import annotations

import copy
from datetime import datetime

from tests.fakes.kube_cluster import FakeCluster
from tests.fakes.kube_store import Obj, format_time, parse_time
from tests.fakes.kube_workloads import controller_uid, owner_reference

SCHEDULED = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def _finished(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def cronjob(
    namespace: str,
    name: str,
    *,
    image: str,
    container: str = "mongodump",
    schedule: str = "0 3 * * *",
) -> Obj:
    """A CronJob as `kubectl create cronjob` would write it: one container, no retries."""
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": container, "image": image}]}}
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"schedule": schedule, "jobTemplate": {"spec": {"backoffLimit": 0, "template": template}}},
    }


class CronJobs:
    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        cluster.controllers.append(self.sync)

    def run(self, namespace: str, name: str, *, scheduled: datetime | None = None) -> Obj:
        """Start the CronJob's Job for ``scheduled`` (default: now); returns the Job."""
        cj = self.cluster.get_object("CronJob", namespace, name)
        when = scheduled or self.cluster.clock.now()
        template = (cj.get("spec") or {}).get("jobTemplate") or {}
        tmeta = template.get("metadata") or {}
        job = self.cluster.add_object(
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {
                    "name": f"{name}-{int(when.timestamp()) // 60}",
                    "namespace": namespace,
                    "labels": dict(tmeta.get("labels") or {}),
                    "annotations": {**(tmeta.get("annotations") or {}), SCHEDULED: format_time(when)},
                    "ownerReferences": [owner_reference(cj)],
                },
                "spec": copy.deepcopy(template.get("spec") or {}),
            }
        )
        cj = self.cluster.get_object("CronJob", namespace, name)
        cj.setdefault("status", {})["lastScheduleTime"] = format_time(when)
        self.cluster.update_object(cj)
        return job

    def sync(self) -> bool:
        changed = False
        jobs = self.cluster.list_objects("Job")
        for cj in self.cluster.list_objects("CronJob"):
            uid = cj["metadata"]["uid"]
            owned = [j for j in jobs if controller_uid(j) == uid]
            status = copy.deepcopy(cj.get("status") or {})
            active = [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": j["metadata"]["name"],
                    "namespace": j["metadata"]["namespace"],
                    "uid": j["metadata"]["uid"],
                }
                for j in owned
                if _finished(j) is None
            ]
            if active:
                status["active"] = active
            else:
                status.pop("active", None)
            done = [
                str(j["status"]["completionTime"])
                for j in owned
                if _finished(j) == "Complete" and (j.get("status") or {}).get("completionTime")
            ]
            if done:
                newest = max(done, key=parse_time)
                old = status.get("lastSuccessfulTime")
                if old is None or parse_time(newest) > parse_time(old):
                    status["lastSuccessfulTime"] = newest
            if status != (cj.get("status") or {}):
                cj["status"] = status
                self.cluster.update_object(cj)
                changed = True
        return changed
