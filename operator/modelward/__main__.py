"""``python -m modelward`` is the ``modelward`` console script."""

from modelward.cli import main

raise SystemExit(main())
