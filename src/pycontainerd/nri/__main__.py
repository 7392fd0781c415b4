"""``python -m pycontainerd.nri MODULE[:CLASS]``: run an SDK plugin (see :mod:`.runner`)."""

from __future__ import annotations

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
