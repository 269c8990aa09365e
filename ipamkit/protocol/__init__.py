"""Docker's IPAM plugin protocol: one place for the whole wire.

``wire`` (the messages and their JSON), ``server`` (``ipamkit serve``: an
:class:`~ipamkit.Ipam` served to Docker's daemon), ``client`` (HTTP to a
plugin, and its activation) and ``discovery`` (finding a v1 plugin by name as
the daemon does). The ``remote`` driver is a thin adapter over ``client``.
"""
