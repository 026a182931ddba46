"""``python -m livesupport``: the same as the ``livesupport`` command."""

from .cli import main

raise SystemExit(main())
