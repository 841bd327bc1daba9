"""Kubernetes API errors, mapped from HTTP status codes.

KubeError (StepError)
├── KubeNotFound      404
├── KubeConflict      409 (someone else changed it: resourceVersion, AlreadyExists)
├── KubeInvalid       422 (incl. a failed JSON Patch ``test``: the precondition no longer holds)
├── KubeForbidden     401/403 (RBAC: say which verb on which resource)
└── KubeTransient     429, 5xx, timeouts, connection errors (retried, boundedly)
"""

from __future__ import annotations

from typing import Any

from medic.domain.errors import StepError


class KubeError(StepError):
    status: int = 0

    def __init__(self, message: str, *, status: int = 0, reason: str = "", body: Any = None) -> None:
        super().__init__(message)
        self.status = status or self.status
        self.reason = reason
        self.body = body


class KubeNotFound(KubeError):
    status = 404


class KubeConflict(KubeError):
    status = 409


class KubeInvalid(KubeError):
    status = 422


class KubeForbidden(KubeError):
    status = 403


class KubeTransient(KubeError):
    """Worth retrying: throttled, server error, timeout, connection refused."""


def error_for_status(status: int, message: str, reason: str = "", body: Any = None) -> KubeError:
    cls: type[KubeError]
    if status == 404:
        cls = KubeNotFound
    elif status == 409:
        cls = KubeConflict
    elif status == 422:
        cls = KubeInvalid
    elif status in (401, 403):
        cls = KubeForbidden
    elif status == 429 or status >= 500:
        cls = KubeTransient
    else:
        cls = KubeError
    return cls(message, status=status, reason=reason, body=body)
