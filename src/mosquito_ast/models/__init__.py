"""AST encoder construction and loading, and the heads built on it."""
