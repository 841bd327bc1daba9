"""The Kubernetes collectors (``k8s.*``), runbook 3.1-3.5: every one reads through
:mod:`medic.kube.reads`, so the objects several of them need are fetched once per playbook run,
and the number of API calls does not grow with the number of crash-looping pods."""

from __future__ import annotations

from medic.collectors import k8s_cluster, k8s_pods, k8s_workload
from medic.playbooks.registry import CollectorDef

COLLECTORS: list[CollectorDef] = [*k8s_pods.COLLECTORS, *k8s_workload.COLLECTORS, *k8s_cluster.COLLECTORS]
