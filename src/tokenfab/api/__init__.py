"""The Python API: the CLI's commands as functions with the same parameter names.

    from tokenfab import api
    r = api.predict(model="llama-3.1-8b", hardware="h100-sxm", batch=8, input_len=1024, output_len=256)
    r.to_dict()  # == `tokenfab predict ... --json`

Names may be catalog names or paths to a user's YAML (chips, systems) or config.json
(models). Every user mistake raises an `tokenfab.errors.TokenfabError` subclass.
"""

from __future__ import annotations

from tokenfab.api.capacity import predicted_capacity
from tokenfab.api.deployment import Deployment, deployment
from tokenfab.api.ops import OpResult, op
from tokenfab.api.predict import StepInfo, predict, step
from tokenfab.api.search import search
from tokenfab.api.simulate import simulate
from tokenfab.api.sweep import sweep
from tokenfab.execution.predict import PredictResult

__all__ = ["predict", "op", "step", "simulate", "search", "sweep", "predicted_capacity", "deployment", "PredictResult", "OpResult",
           "StepInfo", "Deployment"]
