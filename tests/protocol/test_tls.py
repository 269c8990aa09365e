"""The remote driver over HTTPS, as a ``.json`` spec file with ``TLSConfig`` configures it."""

from __future__ import annotations

import shutil
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipamkit import errors
from ipamkit.drivers.remote import Endpoint, TLSConfig, connect
from tests.protocol.conftest import FakePlugin, plugin_handler

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


class _TLSServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def tls_plugin(tmp_path: Path) -> Iterator[tuple[FakePlugin, str, Path]]:
    """A fake plugin on https://127.0.0.1:PORT with a self-signed certificate for 127.0.0.1."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1"
    subprocess.run(
        [*command.split(), "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert],
        check=True,
        capture_output=True,
    )
    plugin = FakePlugin(tmp_path / "unused.sock")
    server = _TLSServer(("127.0.0.1", 0), plugin_handler(plugin))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield plugin, f"https://127.0.0.1:{server.server_address[1]}", cert
    server.shutdown()
    server.server_close()
    thread.join()


def test_a_plugin_is_reached_over_https_with_its_ca(
    tls_plugin: tuple[FakePlugin, str, Path],
) -> None:
    plugin, url, cert = tls_plugin
    driver, _ = connect(Endpoint.parse(url, TLSConfig(ca_file=str(cert))), retry=0)
    assert plugin.requests[0].headers["Host"] == url.removeprefix("https://")
    driver.close()


def test_an_unknown_certificate_is_refused_unless_verification_is_skipped(
    tls_plugin: tuple[FakePlugin, str, Path],
) -> None:
    plugin, url, _ = tls_plugin
    with pytest.raises(errors.PluginTransportError, match="CERTIFICATE_VERIFY_FAILED"):
        connect(Endpoint.parse(url, TLSConfig()), retry=5)  # not retried: fails at once
    assert plugin.requests == []
    driver, _ = connect(Endpoint.parse(url, TLSConfig(insecure_skip_verify=True)), retry=0)
    assert plugin.calls() == ["/Plugin.Activate", "/IpamDriver.GetCapabilities"]
    driver.close()
