"""The Kubernetes collectors (``k8s.*``), runbook 3.1-3.5: every one reads through
:mod:`medic.clients.kube.reads`, so the objects several of them need are fetched once per playbook run,
and the number of API calls does not grow with the number of crash-looping pods."""

from __future__ import annotations

from medic.collectors.k8s import cluster as k8s_cluster
from medic.collectors.k8s import pods as k8s_pods
from medic.collectors.k8s import workload as k8s_workload
from medic.playbooks.contract import CollectorDef

COLLECTORS: list[CollectorDef] = [*k8s_pods.COLLECTORS, *k8s_workload.COLLECTORS, *k8s_cluster.COLLECTORS]
