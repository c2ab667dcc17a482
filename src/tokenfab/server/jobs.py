"""Background jobs for long calls (search, plan, big simulations): submit, poll by id.

A job runs on a small thread pool so the HTTP loop stays responsive. Python cannot stop a thread,
so a job past its time limit is reported `failed` (with the reason) and its eventual result is
dropped; the limit bounds what a client waits for, not the CPU the call may still use.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from tokenfab.errors import TokenfabError

JobStatus = Literal["queued", "running", "done", "failed"]


@dataclass(slots=True)
class JobState:
    """One submitted call and what became of it."""

    job_id: str
    kind: str
    submitted_s: float
    time_limit_s: float
    status: JobStatus = "queued"
    started_s: float | None = None
    finished_s: float | None = None
    result: Any = None
    error: str | None = None
    error_status_code: int | None = None

    def to_dict(self, now_s: float) -> dict:
        if self.status == "running" and now_s - (self.started_s or now_s) > self.time_limit_s:
            self.status, self.finished_s = "failed", now_s
            self.error, self.error_status_code = f"exceeded the server's time limit of {self.time_limit_s:g} s per call", 504
        elapsed = (self.finished_s or now_s) - (self.started_s or now_s) if self.started_s else 0.0
        out = {"job_id": self.job_id, "kind": self.kind, "status": self.status, "elapsed_s": elapsed,
               "progress_frac": 1.0 if self.status == "done" else None}
        if self.status == "done":
            out["result"] = self.result
        if self.status == "failed":
            out["error"] = self.error
            out["error_status_code"] = self.error_status_code
        return out


@dataclass
class JobStore:
    """Jobs by id, run on `num_workers` threads; the oldest finished ones are forgotten past `max_jobs`."""

    num_workers: int = 2
    max_jobs: int = 1000
    _jobs: dict[str, JobState] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None

    def submit(self, kind: str, call: Callable[[], Any], time_limit_s: float) -> JobState:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="tokenfab-job")
        job = JobState(uuid.uuid4().hex[:16], kind, time.monotonic(), time_limit_s)
        with self._lock:
            self._forget_old()
            self._jobs[job.job_id] = job
        self._pool.submit(self._run, job, call)
        return job

    def get(self, job_id: str) -> JobState | None:
        with self._lock:
            return self._jobs.get(job_id)

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, job: JobState, call: Callable[[], Any]) -> None:
        job.status, job.started_s = "running", time.monotonic()
        try:
            result = call()
        except TokenfabError as exc:
            outcome = ("failed", None, " ".join(str(exc).split()), 400)
        except Exception as exc:  # noqa: BLE001 - reported to the client, not raised in a worker thread
            outcome = ("failed", None, f"internal error: {type(exc).__name__}: {exc}", 500)
            traceback.print_exc()
        else:
            outcome = ("done", result, None, None)
        if job.status == "failed":  # timed out meanwhile: keep that verdict
            return
        job.status, job.result, job.error, job.error_status_code = outcome
        job.finished_s = time.monotonic()

    def _forget_old(self) -> None:
        if len(self._jobs) < self.max_jobs:
            return
        finished = [j for j in self._jobs.values() if j.status in ("done", "failed")]
        for job in sorted(finished, key=lambda j: j.submitted_s)[: len(self._jobs) - self.max_jobs + 1]:
            del self._jobs[job.job_id]
