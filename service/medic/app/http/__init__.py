"""The HTTP endpoints besides the webhook: read API, admin API, approvals, pages."""
