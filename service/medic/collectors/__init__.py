"""Collectors: each gathers one kind of evidence. They may raise; the runner turns that into a status."""
