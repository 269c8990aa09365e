"""The ``remote`` driver: an :class:`~ipamkit.Ipam` whose work a plugin process does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from ipaddress import ip_interface

from ipamkit import wire
from ipamkit._arguments import (
    check_options,
    check_pool_request,
    check_str,
    parse_address,
    parse_pool,
)
from ipamkit._contract import Address, AddressResult, Capability, Interface, Ipam, PoolResult
from ipamkit.drivers.remote._transport import PluginClient
from ipamkit.errors import IpamError, NoIPReturnedError, PluginError

__all__ = ["RemoteIpam", "activate"]

# Go's net.ParseCIDR: an address, a slash and a decimal length, nothing else.
_CIDR = re.compile(r"[0-9A-Fa-f.:]+/[0-9]{1,3}")


def activate(client: PluginClient, name: str) -> Capability:
    """Activate the plugin as an IPAM driver and return its capabilities.

    As Docker: the plugin must list ``IpamDriver`` in ``Implements``, and a plugin
    that does not answer ``GetCapabilities`` has none.
    """
    (implements,) = client.call(wire.ACTIVATE)
    if wire.IMPLEMENTS not in implements:
        raise PluginError(
            "Plugin does not implement the requested driver: "
            f'plugin="{name}", requested implementation="{wire.IMPLEMENTS}"',
            method=wire.ACTIVATE.method,
            text=", ".join(implements),
        )
    try:
        mac, replay = client.call(wire.GET_CAPABILITIES)
    except IpamError:
        return Capability()
    return Capability(requires_mac_address=mac, requires_request_replay=replay)


def _invalid_reply(message: wire.Message, what: str, value: str) -> PluginError:
    return PluginError(
        f"{message.method}: the plugin returned an invalid {what}: {value!r}",
        method=message.method,
        text=value,
    )


class RemoteIpam(Ipam):
    """Forwards each call to a plugin speaking Docker's IPAM protocol.

    Arguments are checked locally first (a wrong type is a :class:`TypeError`, a
    malformed address an :class:`~ipamkit.errors.InvalidParameterError`); pools
    go out as given, since parsing them is the plugin's business. A plugin
    cannot declare features or its reading of ``request_pool``, so they stay at
    none and exclusive; whoever checks the driver declares them.
    """

    def __init__(self, client: PluginClient) -> None:
        self._client = client

    @property
    def endpoint(self) -> str:
        """Where the plugin listens."""
        return str(self._client.endpoint)

    def __repr__(self) -> str:
        return f"RemoteIpam({self.endpoint!r})"

    def get_default_address_spaces(self) -> tuple[str, str]:
        local, global_ = self._client.call(wire.GET_DEFAULT_ADDRESS_SPACES)
        return local, global_

    def request_pool(
        self,
        address_space: str,
        pool: str = "",
        sub_pool: str = "",
        options: Mapping[str, str] | None = None,
        v6: bool = False,
    ) -> PoolResult:
        check_pool_request(address_space, pool, sub_pool, options, v6)
        sent = _options(options)
        pool_id, cidr, data = self._client.call(
            wire.REQUEST_POOL, address_space, pool, sub_pool, sent, v6
        )
        # Docker keeps host bits of the returned pool; a Network cannot hold
        # them, so they are masked here (a returned interface keeps them).
        try:
            if _CIDR.fullmatch(cidr) is None:
                raise ValueError(cidr)
            network = parse_pool(cidr)
        except (IpamError, ValueError):
            raise _invalid_reply(wire.REQUEST_POOL, "pool", cidr) from None
        assert network is not None  # the pattern rules out ""
        return PoolResult(pool_id, network, dict(data or {}))

    def release_pool(self, pool_id: str) -> None:
        check_str(pool_id, "pool_id")
        self._client.call(wire.RELEASE_POOL, pool_id)

    def request_address(
        self,
        pool_id: str,
        address: Address | str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> AddressResult:
        check_str(pool_id, "pool_id")
        wanted = "" if address is None else str(parse_address(address))
        sent = _options(options)
        returned, data = self._client.call(wire.REQUEST_ADDRESS, pool_id, wanted, sent)
        if not returned:
            raise NoIPReturnedError
        return AddressResult(_interface(returned), dict(data or {}))

    def release_address(self, pool_id: str, address: Address | str) -> None:
        check_str(pool_id, "pool_id")
        self._client.call(wire.RELEASE_ADDRESS, pool_id, str(parse_address(address)))

    def is_builtin(self) -> bool:
        return False

    def close(self) -> None:
        """Close the connections to the plugin."""
        self._client.close()


def _options(options: object) -> dict[str, str] | None:
    # Docker sends a nil map as null and an empty one as {}: keep the difference.
    checked = check_options(options)
    return None if options is None else dict(checked)


def _interface(text: str) -> Interface:
    try:
        if _CIDR.fullmatch(text) is None:
            raise ValueError(text)
        return ip_interface(text)
    except ValueError:
        raise _invalid_reply(wire.REQUEST_ADDRESS, "address", text) from None
