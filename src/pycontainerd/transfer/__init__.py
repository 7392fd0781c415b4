"""The Transfer service's engine: pull, push, import, export and tag, with progress."""
