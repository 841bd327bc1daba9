"""Decisions, pure: findings and facts in, a proposal and one verdict per guard out."""
