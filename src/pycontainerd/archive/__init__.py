"""Layer tarballs: applying them into a directory without ever writing outside it.

:mod:`rootpath` resolves a path inside a root the way the container will see it (symlinks
followed but clamped to the root); :mod:`tar` applies a tar stream in one pass, turning OCI
whiteouts into overlayfs whiteouts (or deletions, for full-copy snapshotters).
"""
