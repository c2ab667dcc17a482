"""`python -m tokenfab` runs the CLI."""

from tokenfab.cli.main import run

run()
