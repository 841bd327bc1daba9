"""Incident store: incidents (the bundles) and, later, the audit log. SQLite or MongoDB."""
