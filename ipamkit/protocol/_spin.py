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


class Spin:
    """Whether the next wait polls first, and for how long: while waits end within ``seconds``."""

    __slots__ = ("polling", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.polling = seconds > 0

    def slept(self, started: float) -> None:
        """A wait that slept from ``started`` (``time.perf_counter()``) has ended."""
        self.polling = time.perf_counter() - started < self.seconds


def receive(sock: socket.socket, size: int, spin: Spin) -> bytes:
    """``sock.recv(size)``, polling first while ``spin`` says so."""
    if spin.polling:
        end = time.perf_counter() + spin.seconds
        while True:
            try:
                return sock.recv(size, socket.MSG_DONTWAIT)
            except BlockingIOError:
                if time.perf_counter() >= end:
                    break
                _yield()
        spin.polling = False
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
                    return ready
                if time.perf_counter() >= end:
                    break
                _yield()
            spin.polling = False
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
