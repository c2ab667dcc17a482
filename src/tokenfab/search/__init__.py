"""Deployment search under SLOs: steady-state capacity from the step model, candidate screening,
confirmation by simulation, deployment files."""
