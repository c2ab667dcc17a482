"""Run one function over chunks of work on a Ray cluster, results in the order of the chunks.

`search` screens candidates and `sweep` evaluates design points this way (`--ray ADDRESS`, 'local' starts a
cluster in this process); Ray is an optional extra (`pip install 'tokenfab[ray]'`), so its absence is a one-line
error naming the extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from tokenfab.errors import MissingDependencyError


def ray_map(fn: Callable[..., list], calls: Iterable[tuple], address: str) -> list[Any]:
    """fn(*args) for each args tuple of `calls` as Ray tasks, the returned lists concatenated in call order."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray", "--ray") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(fn)
    refs = [remote.remote(*args) for args in calls]
    out: list[Any] = []
    for part in ray.get(refs):  # ray.get keeps the order of refs
        out += part
    return out
