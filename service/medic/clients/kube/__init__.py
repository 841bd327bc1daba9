"""Kubernetes access: one client per process, errors mapped to a small hierarchy, bounded retries."""
