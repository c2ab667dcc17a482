"""infersim: from chip spec to token factory.

Predict how AI models run on inference accelerators (existing and planned), check the
predictions against measured silicon, simulate serving deployments and plan fleets.
Start with `infersim.api` (Python) or the `infersim` command.
"""

__version__ = "0.1.0"
