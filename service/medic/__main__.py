"""``python -m medic``: the ``medic`` command (stable whatever the layout of the package)."""

from medic.app.cli.main import main

raise SystemExit(main())
