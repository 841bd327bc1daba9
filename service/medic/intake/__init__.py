"""Alertmanager webhook intake: payload model, auth, HTTP handlers."""
