"""The HTTP/JSON service (`tokenfab serve`): the Python API behind FastAPI, with limits and background jobs."""

from __future__ import annotations

from tokenfab.server.app import ServerLimits, create_app

__all__ = ["ServerLimits", "create_app"]
