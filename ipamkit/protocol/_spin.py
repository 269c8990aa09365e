"""Waiting for the other side by polling a little before sleeping: the client and the server.

Why: a call is a round trip between two processes, and on the project's
2-core VMs most of a round trip was not work but wake-ups. A process asleep in
the kernel costs the one that wakes it an inter-processor interrupt (a VM
exit), and itself a cold start: 10 µs of Python work per side cost about 35 µs
of CPU per side in a round trip between sleeping processes, and 20 µs between
polling ones. Measured with ``bench/bench_remote.py`` (one caller, a trivial
driver, load average about 1, five runs): sleeping at once, 7,810 to 9,791
calls/s with about 50 + 70 µs of CPU per call (client + server); both sides
polling for up to 200 µs first, 13,194 to 18,200 calls/s with 56 to 75 µs on
each side. Go's runtime, on which Docker's daemon and its
plugins run, polls before parking its threads for the same reason.

The cost: a wait that ends later than ``spin`` spends ``spin`` seconds of CPU
first. So polling follows the peer: a wait that polled in vain makes the next
ones sleep at once, until one that slept ends within ``spin`` again (a peer
that answers slowly, or a server's idle hours, cost one spin, not one per
wait); and between two polls the CPU goes to any other process ready to run
on it. ``spin=0`` turns polling off.

A busy CPU is a reason to stop polling: a poller that gave its CPU away
between two polls is runnable, not asleep, so its reply does not wake it, and
it waits for the other process's time slice to end (milliseconds). Sleeping,
it would be woken at once. So a poll after which the clock has moved on by
more than a quarter of ``spin`` (its CPU went to someone else) ends the
polling, and the next waits sleep whatever their peer does: one, then twice as
many each time it happens again, up to 4,096, until a poll succeeds without
losing its CPU. Measured with ``bench/bench_remote.py``'s client beside a
CPU-bound process on one of the two cores, six runs each: polling without this
rule, 4,706 to 7,886 calls/s; with it, 7,852 to 9,007; never polling, 8,848 to
9,496 (three runs). On the quiet machine, six runs each, 8,159 to 11,722
without the rule and 8,304 to 13,248 with it: no difference beyond the host's
swings.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any

__all__ = ["SPIN", "Spin", "SpinningSelector", "check_spin", "receive", "run", "spin_range_error"]

#: Seconds a client waits for its reply, or an idle server for its next event,
#: by polling before it sleeps in the kernel.
SPIN = 0.0002

# Between two polls the CPU goes to whatever else is ready to run on it: when
# the peer shares this CPU, polling must not keep it from answering (it made
# a round trip 3 times as slow). Where there is no sched_yield, a no-op.
_yield = getattr(os, "sched_yield", lambda: None)


def spin_range_error(spin: float) -> str | None:
    """What is wrong with ``spin`` seconds, or None when they are from 0 to 1."""
    # Beyond a second, polling is a busy loop, not a wait for a reply.
    return None if 0 <= spin <= 1 else f"must be from 0 to 1 seconds, not {spin:g}"


def check_spin(spin: float) -> None:
    """Raise ValueError unless ``spin`` is a number of seconds from 0 to 1."""
    if isinstance(spin, bool) or not isinstance(spin, (int, float)):
        raise TypeError(f"spin must be a number of seconds, not {type(spin).__name__}")
    problem = spin_range_error(spin)
    if problem is not None:
        raise ValueError(f"spin {problem}")


# The most waits that sleep without polling after a poll lost its CPU.
_MAX_REST = 4096


class Spin:
    """Whether the next wait polls first, and for how long: while waits end within ``seconds``.

    ``crowded`` is how far the clock may move on in one poll before the CPU
    counts as busy (see the module docstring).
    """

    __slots__ = ("_backoff", "_rest", "crowded", "polling", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.polling = seconds > 0
        self.crowded = seconds / 4
        # Waits left that sleep at once, and how many the next busy CPU costs.
        self._rest = 0
        self._backoff = 1

    def slept(self, started: float) -> None:
        """A wait that slept from ``started`` (``time.perf_counter()``) has ended."""
        if self._rest:
            self._rest -= 1
            return
        self.polling = time.perf_counter() - started < self.seconds

    def polled(self) -> None:
        """A poll found what it waited for, its CPU its own meanwhile."""
        self._backoff = 1

    def poll_again(self, end: float) -> bool:
        """After a poll that found nothing: give the CPU away, and tell whether to poll on.

        Polling ends at ``end`` (``time.perf_counter()``), or once a poll lost its CPU.
        """
        now = time.perf_counter()
        if now >= end:
            self.polling = False
            return False
        _yield()
        if time.perf_counter() - now > self.crowded:
            self.lost_cpu()
            return False
        return True

    def lost_cpu(self) -> None:
        """A poll gave its CPU to another process: sleep for the next waits."""
        self.polling = False
        # The wait that lost its CPU sleeps now, and counts as one.
        self._rest = self._backoff + 1
        self._backoff = min(2 * self._backoff, _MAX_REST)


def receive(sock: socket.socket, size: int, spin: Spin) -> bytes:
    """``sock.recv(size)``, polling first while ``spin`` says so."""
    if spin.polling:
        end = time.perf_counter() + spin.seconds
        while True:
            try:
                data = sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if not spin.poll_again(end):
                    break
            else:
                spin.polled()
                return data
    if not spin.seconds:
        return sock.recv(size)
    started = time.perf_counter()
    data = sock.recv(size)
    spin.slept(started)
    return data


class SpinningSelector(selectors.DefaultSelector):
    """The platform's selector, polling for up to ``spin.seconds`` first while ``spin`` says so."""

    def __init__(self, spin: Spin) -> None:
        super().__init__()
        self._spin = spin

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        spin = self._spin
        if timeout is not None and timeout <= 0:
            return super().select(timeout)
        started = time.perf_counter()
        if spin.polling:
            end = started + (spin.seconds if timeout is None else min(spin.seconds, timeout))
            while True:
                ready = super().select(0)
                if ready:
                    spin.polled()
                    return ready
                if not spin.poll_again(end):
                    break
            spun = time.perf_counter() - started
            if timeout is not None:
                if spun >= timeout:
                    return ready
                timeout -= spun
            started += spun
        ready = super().select(timeout)
        spin.slept(started)
        return ready


def run(main: Coroutine[Any, Any, None], spin: float) -> None:
    """``asyncio.run(main)`` on a loop whose selector polls for ``spin`` seconds first."""
    if not spin:
        asyncio.run(main)
        return

    def new_loop() -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop(SpinningSelector(Spin(spin)))

    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(main)
        return
    # Python 3.10's asyncio.run takes no loop factory: the same steps by hand,
    # the loop current meanwhile (asyncio.gather looks it up).
    loop = new_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
