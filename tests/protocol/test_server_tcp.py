"""``ipamkit serve --listen``: no browser reaches the driver, and HTTPS with client certificates."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ipamkit import errors
from ipamkit.drivers.remote import Endpoint, TLSConfig, connect
from ipamkit.protocol import wire
from ipamkit.protocol.discovery import find_plugin
from tests.protocol.conftest import Served, start_serve
from tests.protocol.server_helpers import Raw, docker_request, read_reply, wait_for

POOL = {"AddressSpace": "local", "Pool": "10.9.0.0/24", "SubPool": "", "Options": {}, "V6": False}
ServeTCP = Callable[..., tuple[Served, str]]


@pytest.fixture
def serve_tcp(short_dir: Path) -> Iterator[ServeTCP]:
    """Start ``ipamkit serve memory --listen 127.0.0.1:0 ARGS``; give its URL."""
    started: list[Served] = []

    def start(*extra: str) -> tuple[Served, str]:
        # With TLS, Docker's .json form, which carries the TLS settings.
        kind = ".json" if "--tls-cert" in extra else ".spec"
        spec = short_dir / f"tcp{len(started)}{kind}"
        args = ["memory", "--listen", "127.0.0.1:0", "--spec-file", str(spec), *extra]
        served = Served(start_serve(args, short_dir / "site", spec), spec)
        started.append(served)
        text = spec.read_text()
        return served, json.loads(text)["Addr"] if kind == ".json" else text.strip()

    yield start
    for served in started:
        if served.alive():
            served.stop(signal.SIGTERM)


def _address(url: str) -> tuple[str, int]:
    host, _, port = url.partition("://")[2].rpartition(":")
    return host, int(port)


@pytest.mark.parametrize(
    "marks",
    [
        b"Origin: http://evil.example\r\nContent-Type: text/plain\r\n",
        b"Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\n",
        b"Origin: null\r\n",
    ],
)
def test_a_browsers_request_is_refused_before_the_driver(serve_tcp: ServeTCP, marks: bytes) -> None:
    served, url = serve_tcp()
    browser = Raw(_address(url))
    assert browser.call(wire.REQUEST_POOL.path, POOL, extra=marks)[0] == 403
    docker = Raw(_address(url))
    status, reply = docker.call(wire.REQUEST_POOL.path, POOL)
    assert (status, reply.get("PoolID")) == (200, "local/10.9.0.0/24")  # it was never taken
    docker.close()
    browser.close()
    wait_for(lambda: "refused (403): a browser's request" in served.log(), "the refusal's log line")


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, and a server (127.0.0.1) and a client certificate it signed."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make certificates")
    where = tmp_path_factory.mktemp("certs")
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    # The extensions Python 3.13's strict verification (VERIFY_X509_STRICT) asks for.
    ca = ("-addext", "basicConstraints=critical,CA:TRUE")
    ca += ("-addext", "keyUsage=critical,keyCertSign,cRLSign")
    _openssl("req", "-x509", *key, "-days", "1", "-subj", "/CN=test-ca", *ca,
             "-keyout", where / "ca.key", "-out", where / "ca.pem")  # fmt: skip
    leaf = "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    (where / "server.ext").write_text(leaf + "subjectAltName=IP:127.0.0.1\n")
    (where / "client.ext").write_text(leaf + "extendedKeyUsage=clientAuth\n")
    for name, subject in (("server", "/CN=127.0.0.1"), ("client", "/CN=docker")):
        _openssl("req", "-new", *key, "-subj", subject,
                 "-keyout", where / f"{name}.key", "-out", where / f"{name}.csr")  # fmt: skip
        _openssl("x509", "-req", "-in", where / f"{name}.csr", "-CA", where / "ca.pem",
                 "-CAkey", where / "ca.key", "-CAcreateserial", "-days", "1",
                 "-extfile", where / f"{name}.ext", "-out", where / f"{name}.pem")  # fmt: skip
    return where


SERVER = ("--tls-cert", "server.pem", "--tls-key", "server.key", "--spec-ca", "ca.pem")
CLIENT = ("--tls-client-ca", "ca.pem", "--spec-client-cert", "client.pem")
CLIENT += ("--spec-client-key", "client.key")


def _files(certificates: Path, *args: str) -> list[str]:
    return [str(certificates / a) if a.endswith((".pem", ".key")) else a for a in args]


def test_https_with_a_server_certificate(
    serve_tcp: ServeTCP, certificates: Path, short_dir: Path
) -> None:
    c = certificates
    _, url = serve_tcp(*_files(c, *SERVER))
    assert url.startswith("https://127.0.0.1:")
    driver, _ = connect(Endpoint.parse(url, TLSConfig(ca_file=str(c / "ca.pem"))), retry=0)
    assert driver.request_pool("local", "10.9.0.0/24").pool_id == "local/10.9.0.0/24"
    driver.close()
    # Found by name as Docker finds it: the spec file's TLSConfig verifies the server.
    endpoint = find_plugin("tcp0", plugin_dirs=[], spec_dirs=[short_dir])
    assert endpoint is not None
    assert endpoint.tls == TLSConfig(ca_file=str(c / "ca.pem"))
    driver, _ = connect(endpoint, retry=0)
    assert driver.request_pool("local", "10.9.1.0/24").pool_id == "local/10.9.1.0/24"
    driver.close()
    plain = Raw(_address(url))  # plain HTTP on the TLS port gets nowhere
    with pytest.raises((ConnectionError, OSError)):
        plain.call(wire.GET_DEFAULT_ADDRESS_SPACES.path)
    plain.close()


def test_with_a_client_ca_only_clients_with_its_certificates_are_served(
    serve_tcp: ServeTCP, certificates: Path
) -> None:
    c = certificates
    served, url = serve_tcp(*_files(c, *SERVER, *CLIENT))
    anonymous = TLSConfig(ca_file=str(c / "ca.pem"))
    with pytest.raises(errors.PluginTransportError):
        connect(Endpoint.parse(url, anonymous), retry=0)
    # The spec file names the client certificate Docker must show.
    endpoint = find_plugin("tcp0", plugin_dirs=[], spec_dirs=[served.socket.parent])
    assert endpoint is not None
    assert endpoint.tls == TLSConfig(
        ca_file=str(c / "ca.pem"), cert_file=str(c / "client.pem"), key_file=str(c / "client.key")
    )
    driver, _ = connect(endpoint, retry=0)
    assert driver.get_default_address_spaces() == ("local", "global")
    driver.close()
    wait_for(lambda: "TLS handshake failed" in served.log(), "the handshake's log line")
    assert "Traceback" not in served.log()


def test_a_browser_is_refused_over_https_too(serve_tcp: ServeTCP, certificates: Path) -> None:
    c = certificates
    _, url = serve_tcp(*_files(c, *SERVER))
    context = ssl.create_default_context(cafile=str(c / "ca.pem"))
    with (
        socket.create_connection(_address(url), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(docker_request(wire.RELEASE_POOL.path, {"PoolID": "x"}, b"Origin: null\r\n"))
        assert read_reply(tls, bytearray())[0] == 403


HTTPS = ("--listen", "127.0.0.1:0", "--tls-cert", "c.pem", "--tls-key", "k.pem")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--tls-cert", "c.pem", "--tls-key", "k.pem"], "--tls-cert goes with --listen"),
        (["--listen", "127.0.0.1:0", "--tls-cert", "c.pem"], "--tls-cert needs --tls-key"),
        (["--listen", "127.0.0.1:0", "--tls-client-ca", "ca.pem"], "go with --tls-cert"),
        (
            ["--listen", "127.0.0.1:0", "--tls-cert", "missing.pem", "--tls-key", "k.pem"],
            "No such file or directory",
        ),
        (["--listen", "127.0.0.1:0", "--spec-ca", "ca.pem"], "--spec-ca goes with --tls-cert"),
        (
            [*HTTPS, "--spec-file", "p.spec", "--spec-ca", "ca.pem"],
            "--spec-file must name a .json spec file",
        ),
        (
            [*HTTPS, "--spec-file", "p.json"],
            "needs --spec-ca",
        ),
        (
            [*HTTPS, "--tls-client-ca", "ca.pem", "--spec-file", "p.json", "--spec-ca", "ca.pem"],
            "--spec-client-cert goes with --tls-client-ca",
        ),
        (
            [*HTTPS, "--spec-file", "p.json", "--spec-ca", "nowhere.pem"],
            "--spec-ca 'nowhere.pem': no such file",
        ),
    ],
)
def test_tls_options_that_cannot_work_are_errors(
    short_dir: Path, args: list[str], complaint: str
) -> None:
    with pytest.raises(AssertionError, match=complaint):
        start_serve(["memory", *args], short_dir / "site", None)
