"""Small tools shipped with pycontainerd (images for demos, tests and benchmarks)."""
