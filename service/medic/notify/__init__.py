"""Notifications: Slack, a generic signed JSON webhook and Grafana annotations, behind one
interface (:class:`medic.notify.base.Notifier`), fed by the pipeline through the dispatcher."""
