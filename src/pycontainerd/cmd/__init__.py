"""Entry points of the ``pycontainerd`` command."""
