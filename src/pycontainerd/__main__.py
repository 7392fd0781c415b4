"""``python -m pycontainerd`` runs the daemon command."""

from pycontainerd.cmd.daemon import main

raise SystemExit(main())
