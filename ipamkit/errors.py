"""The errors of the IPAM contract.

Four classes say what kind of failure happened, as Docker's ``errdefs`` do:
:class:`InvalidParameterError` (the caller asked for something malformed),
:class:`NotFoundError`, :class:`ForbiddenError` (the request conflicts with
state) and :class:`UnavailableError` (the resource is exhausted). Docker's nine
well-known errors are subclasses of these, each with Docker's message as its
default text, so ``except ForbiddenError`` also catches a
:class:`PoolOverlapError`. Every error may carry a more specific message.
"""

from __future__ import annotations

__all__ = [
    "BadPoolError",
    "DriverLoadError",
    "DriverNotConfiguredError",
    "DriverNotFoundError",
    "ForbiddenError",
    "IPAlreadyAllocatedError",
    "IPOutOfRangeError",
    "InvalidAddressSpaceError",
    "InvalidParameterError",
    "InvalidPoolError",
    "InvalidSubPoolError",
    "IpamError",
    "NoAvailableIPsError",
    "NoIPReturnedError",
    "NoMoreSubnetsError",
    "NotFoundError",
    "PluginError",
    "PluginTransportError",
    "PoolOverlapError",
    "UnavailableError",
]


class IpamError(Exception):
    """Base class of every error the contract defines."""

    #: The text used when the error is raised without a message.
    default_message = "IPAM error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(self.default_message if message is None else message)

    @property
    def message(self) -> str:
        """The error's text."""
        return str(self.args[0])


class InvalidParameterError(IpamError):
    """The request is malformed or names something that cannot be."""

    default_message = "invalid parameter"


class NotFoundError(IpamError):
    """What the request names does not exist."""

    default_message = "not found"


class ForbiddenError(IpamError):
    """The request conflicts with what is already allocated or registered."""

    default_message = "forbidden"


class UnavailableError(IpamError):
    """Nothing is left to satisfy the request."""

    default_message = "unavailable"


class InvalidAddressSpaceError(InvalidParameterError):
    """The address space is empty or unknown to the driver."""

    default_message = "invalid address space"


class InvalidPoolError(InvalidParameterError):
    """The pool, or a pool ID, cannot be parsed."""

    default_message = "invalid address pool"


class InvalidSubPoolError(InvalidParameterError):
    """The subpool cannot be parsed, has no pool, or does not fit in its pool."""

    default_message = "invalid address subpool"


class IPOutOfRangeError(InvalidParameterError):
    """The requested or released address lies outside the pool."""

    default_message = "requested address is out of range"


class BadPoolError(InvalidParameterError):
    """The pool ID is well formed but names no live pool."""

    default_message = "address space does not contain specified address pool"


class NoAvailableIPsError(UnavailableError):
    """The pool (or subpool) has no free address left."""

    default_message = "no available addresses on this pool"


class NoIPReturnedError(UnavailableError):
    """A remote driver answered a request for an address with none."""

    default_message = "no address returned"


class NoMoreSubnetsError(UnavailableError):
    """No predefined pool is left to hand out."""

    default_message = "all predefined address pools have been fully subnetted"


class IPAlreadyAllocatedError(ForbiddenError):
    """The requested address is already allocated (or reserved)."""

    default_message = "Address already in use"


class PoolOverlapError(ForbiddenError):
    """The requested pool overlaps a live pool of the same address space."""

    default_message = "Pool overlaps with other one on this address space"


class DriverNotFoundError(NotFoundError):
    """No driver is known under the requested name."""

    default_message = "no such IPAM driver"


class DriverNotConfiguredError(InvalidParameterError):
    """A driver needs options the runtime did not give (a plugin raises it from its hook)."""

    default_message = "IPAM driver is not configured"


class DriverLoadError(IpamError):
    """A driver's plugin could not be loaded; the message names its distribution."""

    default_message = "IPAM driver could not be loaded"


class PluginError(IpamError):
    """A remote plugin failed in a way none of the contract's classes names.

    ``method`` is the plugin method called (``IpamDriver.RequestPool``), ``text``
    the plugin's own error text; the message is worded as Docker words it.
    """

    default_message = "IPAM plugin error"

    def __init__(self, message: str | None = None, *, method: str = "", text: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.text = text


class PluginTransportError(PluginError):
    """A remote plugin could not be reached, or did not answer in time."""

    default_message = "IPAM plugin unreachable"
