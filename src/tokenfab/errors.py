"""One error type per kind of user mistake.

Every `TokenfabError` is a problem with the user's input, never a bug: the CLI prints
its message as one line on stderr and exits with code 2. Anything else that escapes
is an internal error (exit code 1). Messages name the problem and, for names, the
closest valid choices.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class TokenfabError(Exception):
    """Base of all user-input errors (exit code 2)."""

    exit_code = 2


class UnknownNameError(TokenfabError, KeyError):
    """A catalog name (chip, model, dtype, policy, ...) that does not exist."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind = kind
        self.name = name
        self.choices = sorted(set(choices))
        close = nearest_names(name, self.choices)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        listing = ", ".join(self.choices[:12]) + (" ..." if len(self.choices) > 12 else "")
        super().__init__(f"unknown {kind} '{name}'{hint} (valid: {listing})")

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return self.args[0]


class InvalidInputError(TokenfabError, ValueError):
    """A value out of range, inconsistent with another, or malformed."""


class ParallelismError(InvalidInputError):
    """A parallel plan that the model or the system cannot run (TP not dividing heads, ...)."""


class DoesNotFitError(InvalidInputError):
    """The model and its KV cache do not fit in device memory."""


class DataFileError(InvalidInputError):
    """A YAML, JSON, CSV or trace file that cannot be read or does not validate."""


EXTRAS = {"torch": "bench", "ray": "ray"}
"""The only optional packages and the extra that installs each; everything else is a core dependency."""


class MissingDependencyError(TokenfabError, ImportError):
    """A package is not importable: an optional extra (torch, ray) or, in a broken install, a core one."""

    def __init__(self, package: str, *purpose: str):
        # Call sites written before pandas, highspy and matplotlib became core passed (package, extra, purpose);
        # the extra now follows from EXTRAS, so only the last argument, the purpose, is used.
        purpose = purpose[-1] if purpose else "this command"
        extra = EXTRAS.get(package)
        if extra:
            how = f"the optional package '{package}': pip install 'tokenfab[{extra}]'"
        else:
            how = f"'{package}', a core dependency that is missing from this install: pip install --force-reinstall tokenfab"
        super().__init__(f"{purpose} needs {how}")


def nearest_names(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The closest valid names to `name`, best first (substring matches count too)."""
    choices = list(choices)
    lowered = name.lower()
    close = difflib.get_close_matches(lowered, choices, n=n, cutoff=0.5)
    for choice in choices:
        if len(close) >= n:
            break
        if choice not in close and (lowered in choice or choice in lowered):
            close.append(choice)
    return close
