"""The networks: AST encoder construction and the heads built on it (no files; see checkpoints)."""
