"""Worker processes with a time budget per job, that die with the process that started them.

PDFs are read in worker processes (pypdf is pure Python, so processes, not threads, read several
at once). A hostile PDF can make a reader work for hours on a file of a few kilobytes, and no
Python code can stop a running pypdf call from the outside, so each job runs in a process that is
killed when its job goes over budget; the job then reports :class:`JobFailed` and a fresh worker
takes the next job.

Workers never outlive the process that started them: on Linux the kernel kills them when their
parent dies (``PR_SET_PDEATHSIG``), and a watchdog thread in each worker exits when it sees its
parent change (elsewhere, or should the signal be missed). A killed ``sscp-rag ingest`` therefore
leaves no reader spinning at 100% CPU, and no reader holding the index lock (the locks of
:func:`sscp_rag.corpus.folder_lock` are also dropped in every forked child).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

WATCHDOG_SECONDS = 0.5  # how often a worker checks that its parent is alive (besides the kernel signal)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class JobFailed:
    """A job that did not finish: over its time budget, or its worker process died."""

    reason: str
    timed_out: bool = False


def mp_context() -> multiprocessing.context.BaseContext:
    """Fork on Linux: "spawn" and "forkserver" re-import the caller's main module, which runs a
    script that lacks an ``if __name__ == "__main__"`` guard again in every worker. The workers
    run only pypdf, never torch, so the parent's threads are no concern (as with PyTorch's own
    DataLoader workers)."""
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def die_with_parent(parent_pid: int) -> None:
    """Make the calling (worker) process exit as soon as ``parent_pid`` is no longer its parent."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(WATCHDOG_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _worker_main(conn: Connection, fn: Callable[..., Any], parent_pid: int) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops us
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            break
        if job is None:
            break
        try:
            result: Any = fn(*job)
        except Exception as exc:  # noqa: BLE001 - reported as this job's failure, the worker goes on
            result = JobFailed(f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
        try:
            conn.send(result)
        except (OSError, ValueError):
            break
    os._exit(0)


class _Worker:
    def __init__(self, ctx: multiprocessing.context.BaseContext, fn: Callable[..., Any]):
        here, there = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(there, fn, os.getpid()), daemon=True)
        self.proc.start()
        there.close()
        self.conn = here
        self.job: int | None = None
        self.started = 0.0

    def give(self, i: int, job: tuple) -> None:
        self.job, self.started = i, time.monotonic()
        self.conn.send(job)

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


def run_jobs(
    fn: Callable[..., Any],
    jobs: Sequence[tuple],
    workers: int = 1,
    timeout: float = 0.0,
    on_start: Callable[[int], None] | None = None,
) -> Iterator[Any]:
    """``fn(*job)`` for each job, run in ``workers`` worker processes; yields the results in the
    order of ``jobs``. A job still running after ``timeout`` seconds (0 = no limit) has its worker
    killed and yields ``JobFailed(..., timed_out=True)``; a job whose worker dies yields
    ``JobFailed``; an exception raised by ``fn`` yields ``JobFailed`` with its one-line text.

    ``fn`` need not be picklable where workers are forked (Linux). Closing the generator (or an
    error or Ctrl-C in the caller) kills the workers at once.
    """
    if not jobs:
        return
    ctx = mp_context()
    n = max(1, min(workers, len(jobs)))
    pending = deque(range(len(jobs)))
    done: dict[int, Any] = {}
    idle: list[_Worker] = []
    busy: list[_Worker] = []
    next_out = 0
    try:
        idle = [_Worker(ctx, fn) for _ in range(n)]
        while next_out < len(jobs):
            while idle and pending:
                w = idle.pop()
                i = pending.popleft()
                w.give(i, tuple(jobs[i]))
                if on_start:
                    on_start(i)
                busy.append(w)
            if next_out not in done:
                deadlines = [w.started + timeout for w in busy] if timeout > 0 else []
                left = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
                wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=left)
            now = time.monotonic()
            for w in list(busy):
                result: Any
                if w.conn.poll():  # a result beats a deadline: it may have come in just after it
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        result = _died(w)
                    else:
                        busy.remove(w)
                        idle.append(w)
                        done[w.job] = result
                        continue
                elif not w.proc.is_alive():
                    result = _died(w)
                elif timeout > 0 and now - w.started > timeout:
                    result = JobFailed(f"took longer than {timeout:g} s", timed_out=True)
                else:
                    continue
                busy.remove(w)
                w.stop()
                done[w.job] = result
                if pending:
                    idle.append(_Worker(ctx, fn))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
    finally:
        for w in idle + busy:
            w.stop()


def _died(w: _Worker) -> JobFailed:
    w.proc.join(1)
    code = w.proc.exitcode
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return JobFailed(f"its worker process died ({how})")
