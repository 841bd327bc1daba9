"""Shared test setup: real-server fixtures (Alertmanager, Prometheus, Redis) for every test, and
structlog's console output with plain tracebacks (as ``medic serve`` prints them): structlog's
default renders each logged exception through rich, which costs about a second per traceback."""

import structlog

pytest_plugins = ["tests.servers.fixtures", "tests.integration.kube_support"]


def pytest_configure() -> None:
    processors = list(structlog.get_config()["processors"])
    if processors and isinstance(processors[-1], structlog.dev.ConsoleRenderer):
        processors[-1] = structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        structlog.configure(processors=processors)
