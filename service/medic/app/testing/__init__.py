"""``medic test``: rules, playbooks and guards decided offline over fixtures."""
