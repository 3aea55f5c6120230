"""``python -m chatactors serve | client | repl`` (see :mod:`chatactors.cli`)."""

from chatactors.cli import main

raise SystemExit(main())
