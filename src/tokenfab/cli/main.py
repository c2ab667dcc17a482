"""The `tokenfab` command: a thin Typer layer over `tokenfab.api` (no logic here).

Data goes to stdout (rich tables, or JSON with --json); errors go to stderr as one
line. Exit codes: 0 success, 2 bad input (any TokenfabError or usage error), 1 an
internal error (set TOKENFAB_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import json
import math
import os
import sys

import typer
from rich.console import Console

from tokenfab.errors import TokenfabError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Predict, simulate, calibrate and plan AI inference on accelerators.")
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


def emit_json(data: dict) -> None:
    """One JSON object on stdout. JSON has no NaN or infinity: an undefined figure (TPOT when every
    request generated one token) is written as null."""
    sys.stdout.write(json.dumps(_json_safe(data), indent=2, default=float, allow_nan=False) + "\n")


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _json_safe(value.item())
    return value


def _register() -> None:
    # Each command module registers itself on `app`; importing them here keeps `main` small.
    from tokenfab.cli import catalog_cmds, op_cmds, predict_cmds  # noqa: F401
    for optional in ("simulate_cmds", "calibrate_cmds", "plan_cmds", "search_cmds", "sweep_cmds", "serve_cmds"):
        try:
            __import__(f"tokenfab.cli.{optional}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tokenfab.cli.{optional}":
                raise


def run(argv: list[str] | None = None) -> None:
    """Entry point: run the app and map every failure to one line and an exit code."""
    _register()
    try:
        app(args=argv, standalone_mode=False)
    except TokenfabError as exc:
        _fail(str(exc), exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    except typer.TyperException as exc:  # usage errors: unknown option, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError":  # Typer has already printed the help
            sys.exit(0)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint, 2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if os.environ.get("TOKENFAB_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set TOKENFAB_DEBUG=1 for details)", 1)


def _fail(message: str, code: int) -> None:
    first = " ".join(message.split())  # one line, whatever the message held
    err.print(f"error: {first}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":  # `python -m tokenfab.cli.main`: use the package's module, where commands register
    from tokenfab.cli.main import run as _run

    _run()
