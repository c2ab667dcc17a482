"""tokenfab: from chip spec to token factory.

Predict how AI models run on inference accelerators (existing and planned), check the
predictions against measured silicon, simulate serving deployments and plan fleets.
Start with `tokenfab.api` (Python) or the `tokenfab` command.
"""

__version__ = "0.1.0"
