"""Coordination between replicas: per-key locks, the action ledger (cooldowns,
budgets, idempotency), the kill switch, durable marks, the Redis key names."""
