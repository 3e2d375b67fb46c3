"""Where tasks run: in this process, on a local process pool, or on Ray.

Each executor runs `fn(task)` for every task and yields (index, result) as tasks finish, in
any order; an exception that escapes `fn` (a crashed worker, a lost node) is yielded as the
result so the sweep can mark that task's points failed and keep the rest.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from .adapters import SweepError

Task = Any


class SerialExecutor:
    """Runs every task in this process: no start-up cost, and what tests can instrument."""

    name = "serial"
    workers = 1

    def run(self, fn: Callable[[Task], Any], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        for i, t in enumerate(tasks):
            try:
                yield i, fn(t)
            except Exception as exc:   # the same contract as the parallel executors
                yield i, exc

    def close(self) -> None:
        pass


class PoolExecutor:
    """A concurrent.futures process pool. Workers are spawned, not forked: the driver may hold
    threads (tqdm, a Ray client) that a fork would copy in an undefined state."""

    name = "pool"

    def __init__(self, jobs: int | None = None) -> None:
        self.workers = jobs or os.cpu_count() or 1
        if self.workers < 1:
            raise SweepError(f"--jobs must be >= 1, got {jobs}")

    def run(self, fn: Callable[[Task], Any], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        if not tasks:
            return
        ctx = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(tasks)), mp_context=ctx)
        try:
            futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    exc = f.exception()
                    yield futures[f], exc if exc is not None else f.result()
        finally:
            # interrupted: drop the tasks not started instead of running them all first
            pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        pass


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweepError("--ray needs Ray: pip install 'tritium[ray]'") from None
    return ray


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable head for minutes; a refused TCP connection says it now."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return                          # "auto" and the like: Ray resolves them itself
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except OSError as exc:
        raise SweepError(f"--ray {address}: no Ray head answers there ({exc.strerror or exc})"
                         ) from None


class RayExecutor:
    """Ray tasks, one CPU each. `address` "local" starts a Ray instance on this machine with
    `num_cpus` CPUs; anything else connects to that cluster. A connection that already exists
    in this process is reused and left open; one this executor opened is shut down by close().
    """

    name = "ray"

    def __init__(self, address: str = "local", num_cpus: int | None = None) -> None:
        ray = import_ray()
        self._owned = False
        if address != "local":
            _check_reachable(address)
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                      "logging_level": "ERROR"}
            if address == "local":
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc)
                raise SweepError(f"--ray {address}: cannot start or reach Ray: {first}"
                                 ) from None
            self._owned = True
        self.workers = int(ray.cluster_resources().get("CPU", 1))

    def run(self, fn: Callable[[Task], Any], tasks: Sequence[Task]) -> Iterator[tuple[int, Any]]:
        ray = import_ray()
        remote = ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = {remote.remote(t): i for i, t in enumerate(tasks)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except Exception as exc:  # RayTaskError, WorkerCrashedError, ...
                        result = exc
                    yield refs[ref], result
        finally:
            for ref in pending:             # interrupted: the cluster need not finish them
                ray.cancel(ref)

    def close(self) -> None:
        if self._owned:
            import_ray().shutdown()
            self._owned = False


def make_executor(jobs: int | None = None, ray: str | None = None
                  ) -> SerialExecutor | PoolExecutor | RayExecutor:
    if jobs is not None and jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {jobs}")
    if ray:
        return RayExecutor(ray, num_cpus=jobs)
    if jobs == 1:
        return SerialExecutor()
    return PoolExecutor(jobs)
