"""matplotlib for reports: the non-interactive Agg backend, and one line naming the package if it is missing."""

from __future__ import annotations

from tokenfab.errors import MissingDependencyError


def pyplot(purpose: str):
    """`matplotlib.pyplot` on the Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise MissingDependencyError("matplotlib", purpose) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt
