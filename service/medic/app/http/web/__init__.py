"""Incident pages served by Medic: server-rendered (Jinja2, autoescaped), no external assets,
readable on a phone and usable without JavaScript; the approval confirmation pages."""
