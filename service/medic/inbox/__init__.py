"""Coordination state: the inbox (durable queue with dedup) and, later, locks/cooldowns/budgets.

One interface (``base.py``), two backends: embedded SQLite and Redis.
"""
