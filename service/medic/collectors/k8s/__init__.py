"""The Kubernetes collectors (``k8s.*``), runbook 3.1-3.5: every one reads through
:mod:`medic.clients.kube.reads`, so the objects several of them need are fetched once per playbook run,
and the number of API calls does not grow with the number of crash-looping pods.

This package init imports nothing: the analyzers import the output models (``*_output``) alone,
without the collectors and the kube client behind them; the catalogue
(:mod:`medic.app.catalogue`) imports the collector modules."""
