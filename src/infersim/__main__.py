"""`python -m infersim` runs the CLI."""

from infersim.cli.main import run

run()
