"""The ``medic`` command."""
