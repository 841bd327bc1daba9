"""Rules: which alerts Medic handles, with which playbook, and how far it may act."""
