"""`python -m embtune.cli`."""

from embtune.cli import app

app(prog_name="embtune")
