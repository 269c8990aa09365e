"""More than one instance of a driver: restarts, peers in threads and in child processes.

A restart and a peer are built as :class:`~ipamkit_conformance._target.Target`
says (the same options, the peer's options, a fresh host each time). Child
processes are started with multiprocessing's ``spawn`` method, so each builds its
instance in a fresh interpreter from the options alone, as a second host would.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from ipamkit import PoolReading
from ipamkit.errors import IpamError

from ipamkit_conformance._checks import ClauseViolation
from ipamkit_conformance._helpers import Checker
from ipamkit_conformance._recorder import Recorder
from ipamkit_conformance._target import Target

__all__ = [
    "Children",
    "PairChecker",
    "in_threads",
    "join_pool",
    "race_pools",
    "restart",
    "two_programs",
]

#: Seconds any wait on another thread or process may take before the test fails.
WAIT = 120.0


def restart(target: Target, ipam: Recorder) -> None:
    """Restart the driver ``ipam`` calls: close it and go on with a new instance."""
    lines = ["ipam.close()  # restart"]
    if target.restart_command:
        lines.append(f"# the restart command runs: {target.restart_command}")
    ipam.restarted(target.restart(ipam.driver), [*lines, f"ipam = {target.host_expression()}"])


def two_programs(ipam: Recorder, peer: Recorder) -> str:
    """The calls of an instance and of its peer, as one program (the peer's after)."""
    own = peer.program.split("\n", 2)
    body = own[2] if len(own) > 2 else ""
    setup = own[1].replace("ipam = ", "peer = ", 1) if len(own) > 1 else ""
    peer_lines = "\n".join(_as_peer(line) for line in body.splitlines())
    return f"{ipam.program}\n# the peer instance's calls:\n{setup}\n{peer_lines}"


def _as_peer(line: str) -> str:
    return line.replace("ipam.", "peer.")


class PairChecker(Checker):
    """Checks of a test with two instances; a failure shows the calls of both."""

    def __init__(
        self, target: Target, ipam: Recorder, peer: Recorder, clause: str, exact: bool
    ) -> None:
        super().__init__(target, ipam, clause, exact)
        self.peer = peer

    def violation(self, message: str) -> ClauseViolation:
        return ClauseViolation(self.clause, message, two_programs(self.ipam, self.peer))


def join_pool(target: Target, ipam: Recorder, space: str, network: str, pool_id: str) -> str:
    """Return the pool ID ``ipam`` uses for a pool another instance holds.

    Under the refcounted reading it joins the pool with an identical request (which
    must name the same pool ID); under the exclusive one it uses the other's ID.
    """
    if target.pool_reading is PoolReading.REFCOUNTED:
        return ipam.request_pool(space, network).pool_id
    return pool_id


def in_threads(works: list[Callable[[], list[Any]]]) -> list[list[Any]]:
    """Run each of ``works`` in a thread of its own, all started at once; return their results."""
    barrier = threading.Barrier(len(works))
    results: list[list[Any]] = [[] for _ in works]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            barrier.wait(WAIT)
            results[index] = works[index]()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(works))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    if any(thread.is_alive() for thread in threads):
        raise AssertionError(f"a thread calling the driver did not finish within {WAIT:g} s")
    if errors:
        raise errors[0]
    return results


# -- child processes ------------------------------------------------------------


def race_pools(ipam: Recorder, space: str, networks: list[str]) -> list[tuple[bool, str]]:
    """Request each network; per network, whether it was granted and its pool ID or error."""
    got = []
    for network in networks:
        try:
            got.append((True, ipam.request_pool(space, network).pool_id))
        except IpamError as error:
            got.append((False, type(error).__name__))
    return got


def _allocate(target: Target, ipam: Recorder, args: tuple[str, str, str, int]) -> list[str]:
    """Join the pool and take dynamic addresses until none is left (at most ``limit``)."""
    space, network, pool_id, limit = args
    own = join_pool(target, ipam, space, network, pool_id)
    if own != pool_id:
        raise ClauseViolation(
            "C30-shared-pools",
            f"an identical request for {network} in another process returned pool ID "
            f"{own!r}, not the live pool's {pool_id!r}",
        )
    got = []
    for _ in range(limit):
        try:
            interface, _ = ipam.request_address(pool_id)
        except IpamError:
            break
        got.append(str(getattr(interface, "ip", interface)))
    return got


_JOBS: dict[str, Callable[..., Any]] = {
    "race_pools": lambda target, ipam, args: race_pools(ipam, *args),
    "allocate": _allocate,
}


#: A child's job: whether it is the peer, the job's name and its arguments.
Job = tuple[bool, str, tuple[Any, ...]]


def _child(target: Target, job: Job, conn: Connection, start: Any) -> None:
    """A child process: build an instance, do ``job`` when all start, hold until told."""
    peer, name, args = job
    ipam: Recorder | None = None
    try:
        driver = target.new_peer() if peer else target.new_driver()
        ipam = Recorder(driver, target.host_expression(peer))
        start.wait(WAIT)
        conn.send(("result", _JOBS[name](target, ipam, args)))
        # Hold everything until the parent has looked at the state the children made.
        if conn.poll(WAIT):
            conn.recv()
    except BaseException as error:
        start.abort()  # a child that cannot start must not keep the others waiting
        conn.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        problems = ipam.cleanup() if ipam is not None else []
        if ipam is not None:
            ipam.driver.close()
        conn.send(("cleaned", problems, ipam.program if ipam is not None else ""))
        conn.close()


class Children:
    """Child processes, each with its own instance, doing one job at the same moment.

    ``with Children(target, jobs) as results:`` starts them, waits (with the
    parent, which may take part between ``start`` and ``results``) until each has
    done its job, and keeps them holding what they took until the block ends; then
    each gives back everything and exits. A child that does not finish in time is
    terminated, by its own process handle.
    """

    def __init__(self, target: Target, jobs: list[Job]) -> None:
        context = multiprocessing.get_context("spawn")
        self._start = context.Barrier(len(jobs) + 1)
        self._pipes: list[Connection] = []
        self._processes = []
        for job in jobs:
            mine, theirs = context.Pipe()
            self._pipes.append(mine)
            self._processes.append(
                context.Process(target=_child, args=(target, job, theirs, self._start), daemon=True)
            )
        #: Programs of the children's calls, once they have finished.
        self.programs: list[str] = []

    def __enter__(self) -> Children:
        for process in self._processes:
            process.start()
        return self

    def go(self) -> None:
        """Let the children start their jobs (the parent may then do its own)."""
        try:
            self._start.wait(WAIT)
        except threading.BrokenBarrierError:
            errors = [p.recv()[1] for p in self._pipes if p.poll(1)]
            raise AssertionError(f"child processes could not start: {errors}") from None

    def results(self) -> list[Any]:
        """Wait for every child's result."""
        results = []
        for index, pipe in enumerate(self._pipes):
            kind, *rest = self._receive(pipe, index)
            if kind != "result":
                raise AssertionError(f"child process {index} failed: {rest[0]}")
            results.append(rest[0])
        return results

    def _receive(self, pipe: Connection, index: int) -> tuple[Any, ...]:
        if not pipe.poll(WAIT):
            raise AssertionError(f"child process {index} sent nothing within {WAIT:g} s")
        message: tuple[Any, ...] = pipe.recv()
        return message

    def __exit__(self, *exc: object) -> None:
        problems = []
        for index, pipe in enumerate(self._pipes):
            try:
                with contextlib.suppress(OSError):  # a child that failed is gone already
                    pipe.send("release")
                message = self._receive(pipe, index)
                while message[0] != "cleaned":
                    message = self._receive(pipe, index)
                problems += message[1]
                self.programs.append(message[2])
            except (AssertionError, OSError, EOFError) as error:
                problems.append(f"child process {index}: {error}")
        for process in self._processes:
            process.join(WAIT)
            if process.is_alive():
                process.terminate()
                process.join(WAIT)
        for pipe in self._pipes:
            pipe.close()
        if problems and exc[0] is None:
            raise AssertionError(f"child processes could not give back what they took: {problems}")
