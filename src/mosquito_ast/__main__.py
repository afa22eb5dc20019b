"""`python -m mosquito_ast` runs the command line."""

from .cli import app

app(prog_name="mosquito-ast")
