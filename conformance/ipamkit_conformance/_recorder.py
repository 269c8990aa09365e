"""A driver wrapper that remembers what the suite holds and every call it made."""

from __future__ import annotations

import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TypeVar

from ipamkit import Address, AddressResult, Ipam, PoolResult
from ipamkit.errors import IpamError

__all__ = ["Recorder"]

T = TypeVar("T")


def _literal(value: object) -> str:
    # Addresses are written as the strings a driver author would type.
    if value is None or isinstance(value, (str, bool, int, dict)):
        return repr(value)
    return repr(str(value))


class Recorder:
    """Calls a driver on the suite's behalf.

    It keeps what the suite holds (pool references and addresses) so that
    :meth:`cleanup` can give it all back, also after a failure, and never
    touches anything else. It also writes each call as a line of Python, so a
    failure can show the calls that led to it as a program to paste into a test.
    """

    def __init__(self, driver: Ipam, setup: str) -> None:
        self.driver = driver
        self._lock = threading.Lock()
        self._pool_refs: Counter[str] = Counter()
        self._addresses: set[tuple[str, str]] = set()
        self._names: dict[str, str] = {}
        self._lines = ["import ipamkit, pytest", f"ipam = {setup}"]

    # -- the six calls ----------------------------------------------------------

    def get_default_address_spaces(self) -> tuple[str, str]:
        """Call the driver's ``get_default_address_spaces``."""
        return self._call(
            "ipam.get_default_address_spaces()", self.driver.get_default_address_spaces
        )

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        """Call the driver's ``request_pool`` and remember the pool it grants."""
        args = [_literal(address_space)]
        for key, value, default in (
            ("pool", pool, ""),
            ("sub_pool", sub_pool, ""),
            ("options", options, None),
            ("v6", v6, False),
        ):
            if value != default:
                args.append(f"{key}={_literal(value)}")
        text = f"ipam.request_pool({', '.join(args)})"

        def granted(result: PoolResult) -> str:
            pool_id = result[0]
            if not isinstance(pool_id, str):
                return f"{text}  # {result!r}"
            self._pool_refs[pool_id] += 1
            if pool_id in self._names:
                return f"{text}  # {pool_id!r} again"
            self._names[pool_id] = f"pool{len(self._names) + 1}"
            return f"{self._names[pool_id]} = {text}.pool_id  # {pool_id!r}, {result[1]}"

        return self._call(
            text,
            lambda: self.driver.request_pool(address_space, pool, sub_pool, options, v6),
            granted,
        )

    def release_pool(self, pool_id: str) -> None:
        """Call the driver's ``release_pool`` and forget one reference to the pool."""
        self._call(
            f"ipam.release_pool({self._id(pool_id)})", lambda: self.driver.release_pool(pool_id)
        )
        with self._lock:
            self._pool_refs[pool_id] -= 1
            if self._pool_refs[pool_id] <= 0:
                del self._pool_refs[pool_id]
                self._addresses = {a for a in self._addresses if a[0] != pool_id}

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        """Call the driver's ``request_address`` and remember the address it grants."""
        args = [self._id(pool_id)]
        if address is not None:
            args.append(_literal(address))
        if options is not None:
            args.append(f"options={options!r}")
        text = f"ipam.request_address({', '.join(args)})"

        def granted(result: AddressResult) -> str:
            interface = result[0]
            if interface is not None:
                self._addresses.add((pool_id, str(getattr(interface, "ip", interface))))
            return f"{text}  # {interface}"

        return self._call(
            text, lambda: self.driver.request_address(pool_id, address, options), granted
        )

    def release_address(self, pool_id: str, address: Address | str) -> None:
        """Call the driver's ``release_address`` and forget the address."""
        self._call(
            f"ipam.release_address({self._id(pool_id)}, {_literal(address)})",
            lambda: self.driver.release_address(pool_id, address),
        )
        with self._lock:
            self._addresses.discard((pool_id, str(address)))

    def is_builtin(self) -> bool:
        """Call the driver's ``is_builtin``."""
        return self.driver.is_builtin()

    # -- bookkeeping ------------------------------------------------------------

    @property
    def program(self) -> str:
        """Every call so far, as Python."""
        with self._lock:
            return "\n".join(self._lines)

    def note(self, text: str) -> None:
        """Add a comment to the program."""
        with self._lock:
            self._lines.append(f"# {text}")

    def restarted(self, driver: Ipam, lines: list[str]) -> None:
        """Go on with ``driver``, a new instance that holds what the old one held.

        ``lines`` say in Python how it was built, for the program.
        """
        with self._lock:
            self.driver = driver
            self._lines.extend(lines)

    def expect_last(self, errors: tuple[type[Exception], ...]) -> None:
        """Make the last call of the program expect ``errors``, the contract's answer.

        The program then fails as a test where the driver broke the contract.
        """
        names = [f"ipamkit.errors.{e.__name__}" for e in errors]
        expected = names[0] if len(names) == 1 else f"({', '.join(names)})"
        with self._lock:
            call = self._lines[-1]
            if call.startswith("with pytest.raises("):
                call = call.split("\n", 1)[1].strip()
            self._lines[-1] = (
                f"with pytest.raises({expected}):  # the contract's answer\n    {call}"
            )

    def cleanup(self) -> list[str]:
        """Release every address and pool reference the suite holds; return what failed."""
        with self._lock:
            addresses = sorted(self._addresses)
            pools = list(self._pool_refs.items())
            self._addresses.clear()
            self._pool_refs.clear()
        problems = []
        for pool_id, address in addresses:
            try:
                self.driver.release_address(pool_id, address)
            except Exception as exc:
                problems.append(f"release_address({pool_id!r}, {address!r}): {exc!r}")
        for pool_id, count in pools:
            for _ in range(count):
                try:
                    self.driver.release_pool(pool_id)
                except Exception as exc:
                    problems.append(f"release_pool({pool_id!r}): {exc!r}")
                    break
        return problems

    def _id(self, pool_id: str) -> str:
        return self._names.get(pool_id, repr(pool_id))

    def _call(
        self, text: str, call: Callable[[], T], granted: Callable[[T], str] | None = None
    ) -> T:
        with self._lock:
            index = len(self._lines)
            self._lines.append(text)
        try:
            result = call()
        except Exception as exc:
            kind = "ipamkit.errors.IpamError" if isinstance(exc, IpamError) else "Exception"
            with self._lock:
                self._lines[index] = (
                    f"with pytest.raises({kind}):  # {type(exc).__name__}: {exc}\n    {text}"
                )
            raise
        if granted is not None:
            # A result of the wrong shape keeps the bare call; the checks report it.
            with self._lock, contextlib.suppress(TypeError, IndexError, KeyError):
                self._lines[index] = granted(result)
        return result
