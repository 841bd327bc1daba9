"""Clients of the systems Medic talks to (Kubernetes, MongoDB, Redis, Prometheus, Loki,
SQLite): the only modules that import their I/O libraries."""
