"""Medic's own metrics, counted at every layer from intake up."""
