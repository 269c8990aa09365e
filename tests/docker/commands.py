"""What the tests do with the ``docker`` command line, written once."""

from __future__ import annotations

from tests.docker.daemon import DockerDaemon
from tests.docker.image import IMAGE
from tests.docker.plugin import ServedIpamkit


def create_network(daemon: DockerDaemon, plugin: ServedIpamkit, name: str, *options: str) -> None:
    """``docker network create`` with ``plugin`` as the IPAM driver."""
    daemon.docker("network", "create", f"--ipam-driver={plugin.name}", *options, name)


def macvlan(parent: str) -> tuple[str, str]:
    """The options of a macvlan network on ``parent`` (the bridge driver hides overlaps)."""
    return "--driver=macvlan", f"--opt=parent={parent}"


def run_sleeper(daemon: DockerDaemon, name: str, network: str, *options: str) -> None:
    """Start a container that sleeps on ``network`` (``--init`` lets it stop at once)."""
    daemon.docker(
        "run", "--detach", "--init", f"--name={name}", f"--network={network}", *options,
        IMAGE, "sleep", "3600",
    )  # fmt: skip


def addresses(daemon: DockerDaemon, container: str, network: str) -> dict[str, str]:
    """What ``docker inspect`` says the container has on ``network``."""
    settings = daemon.inspect("container", container)["NetworkSettings"]
    assert isinstance(settings, dict)
    found: dict[str, str] = settings["Networks"][network]
    return {key: found[key] for key in ("IPAddress", "Gateway", "GlobalIPv6Address", "IPv6Gateway")}


def address(daemon: DockerDaemon, container: str, network: str) -> str:
    """The container's IPv4 address on ``network``."""
    return addresses(daemon, container, network)["IPAddress"]
