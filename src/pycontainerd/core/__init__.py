"""Value types and interfaces shared by implementations; no I/O, no gRPC."""
