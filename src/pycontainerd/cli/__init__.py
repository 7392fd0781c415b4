"""``pyctr``: a ctr-like command-line client."""
