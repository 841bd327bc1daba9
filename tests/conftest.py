"""Shared test setup: real-server fixtures (Alertmanager, Prometheus, Redis) for every test."""

pytest_plugins = ["tests.servers.fixtures", "tests.integration.kube_support"]
