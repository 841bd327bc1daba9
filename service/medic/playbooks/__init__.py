"""Playbooks: what to check (collectors), how to read it (analyzers), which actions exist."""
