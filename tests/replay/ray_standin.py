"""A stand-in for the `ray` module (the optional extra is not installed in the dev environment), with the part of
Ray's task API a sweep uses: `init`, `remote` (bare or with options), `wait`, `get`, `cancel`, and the exception a
task whose worker died raises from `get` (`ray.exceptions.WorkerCrashedError`).

Tasks run in this process, one at a time, when `wait` picks them: a test's sweep then runs to a known point and
no cluster is needed. A test says what happens to a run: `crash` (its worker dies: `get` raises, as Ray's does for
a task killed or out of memory), `before_run` (called as a run starts: a test raises a stop there, as a Ctrl-C or
SIGTERM in the middle of the sweep), `cluster_lost_after` (after so many tasks, `wait` itself raises),
`unreachable` (`init` raises: no cluster at the address). What the
sweep asked of Ray (the task options, the tasks cancelled) is kept for the test to read.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any


class RayError(Exception):
    pass


class WorkerCrashedError(RayError):
    pass


class RaySystemError(RayError):
    pass


class ObjectRef:
    def __init__(self, function: Callable[..., Any], args: tuple[Any, ...]):
        self.function, self.args = function, args
        self.ran = False
        self.result: Any = None
        self.failure: Exception | None = None


class Standin:
    """One `ray` module's state: a fresh one for each test (`module()`)."""

    def __init__(self) -> None:
        self.crash: set[str] = set()  # run names whose task's worker dies
        self.before_run: Callable[[str], None] | None = None
        self.cluster_lost_after: int | None = None
        self.unreachable = False  # `init` raises, as Ray's does for an address with no cluster
        self.options: list[dict[str, Any]] = []
        self.cancelled: list[tuple[str, bool]] = []  # (run, force)
        self.started: list[str] = []
        self.initialised: list[str] = []

    def module(self) -> types.ModuleType:
        ray = types.ModuleType("ray")
        ray.exceptions = types.SimpleNamespace(  # type: ignore[attr-defined]
            RayError=RayError, WorkerCrashedError=WorkerCrashedError, RaySystemError=RaySystemError
        )
        ray.init = self.init  # type: ignore[attr-defined]
        ray.remote = self.remote  # type: ignore[attr-defined]
        ray.wait = self.wait  # type: ignore[attr-defined]
        ray.get = self.get  # type: ignore[attr-defined]
        ray.cancel = self.cancel  # type: ignore[attr-defined]
        return ray

    def init(self, address: str | None = None, **_options: Any) -> None:
        self.initialised.append(str(address))
        if self.unreachable:
            raise ConnectionError(f"Could not find any running Ray instance at {address}\n(more lines)")

    def remote(self, *function: Callable[..., Any], **options: Any) -> Any:
        """`ray.remote(f)` or `ray.remote(max_retries=0)(f)`, as Ray's."""
        if function:
            return self._remote_function(function[0], {})
        return lambda f: self._remote_function(f, options)

    def _remote_function(self, function: Callable[..., Any], options: dict[str, Any]) -> Any:
        self.options.append(options)
        return types.SimpleNamespace(remote=lambda *args: ObjectRef(function, args))

    def wait(self, refs: list[ObjectRef], num_returns: int = 1) -> tuple[list[ObjectRef], list[ObjectRef]]:
        if self.cluster_lost_after is not None and len(self.started) >= self.cluster_lost_after:
            raise RaySystemError("System error: the cluster at 10.0.0.1:6379 is gone\n(more lines, pids and addresses)")
        ref = refs[0]
        if not ref.ran:
            self._run(ref)
        return [ref], refs[1:]

    def _run(self, ref: ObjectRef) -> None:
        name = ref.args[0].name
        self.started.append(name)
        ref.ran = True
        if self.before_run is not None:
            self.before_run(name)
        if name in self.crash:
            ref.failure = WorkerCrashedError(
                "The worker died unexpectedly while executing this task. Check python-core-worker-*.log files for more "
                "information.\n(pid=4242, ip=10.0.0.2)"
            )
            return
        ref.result = ref.function(*ref.args)

    def get(self, ref: ObjectRef) -> Any:
        if ref.failure is not None:
            raise ref.failure
        return ref.result

    def cancel(self, ref: ObjectRef, *, force: bool = False, recursive: bool = True) -> None:
        self.cancelled.append((ref.args[0].name, force))
