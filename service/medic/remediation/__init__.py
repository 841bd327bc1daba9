"""Remediation: guards (pure), actions (Kubernetes I/O), the executor that ties them with a lock,
an idempotency record, verification and the audit log."""
