"""``python -m flopcount``: see :mod:`flopcount.cli`."""

from flopcount.cli import main

raise SystemExit(main())
