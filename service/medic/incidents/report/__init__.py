"""Renderings of an incident bundle (Markdown for terminals, chat and tickets)."""
