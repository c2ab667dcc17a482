"""Read a plan file: YAML -> validated PlanSpec, every failure a one-line TokenfabError."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from tokenfab.errors import DataFileError
from tokenfab.fleet.spec import PlanSpec
from tokenfab.hardware.catalog import read_yaml


def plan_validation_message(exc: ValidationError) -> str:
    """The first problem as 'field.path: message', without pydantic's 'Value error,' noise."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"])
    message = str(err["msg"]).removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{loc}: {message}{more}" if loc else f"{message}{more}"


def parse_plan(data: dict, where: str = "") -> PlanSpec:
    """Validate a plan mapping; unknown names raise UnknownNameError, other problems DataFileError."""
    try:
        return PlanSpec.model_validate(data)
    except ValidationError as exc:
        origin = f" {where}" if where else ""
        raise DataFileError(f"invalid plan{origin}: {plan_validation_message(exc)}") from None


def load_plan(path: str | Path) -> PlanSpec:
    """A plan file (YAML) as a validated PlanSpec."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"plan file {path} does not exist")
    return parse_plan(read_yaml(path), str(path))
