"""Analyzers: pure functions from evidence to findings, and the decision that follows."""
