"""Generated protobuf and gRPC modules of the wire contract (see scripts/gen_protos.py)."""
