"""Finding a plugin by name as Docker does, and loading it through the host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ipamkit
from ipamkit import Capability, errors
from ipamkit.drivers.remote import Endpoint, RemoteIpam, TLSConfig, find_plugin
from tests.conftest import Site
from tests.protocol.conftest import FakePlugin


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/run/x.sock", Endpoint("unix", "/run/x.sock")),
        ("unix:///run/x.sock", Endpoint("unix", "/run/x.sock")),
        ("tcp://127.0.0.1:8080", Endpoint("http", "127.0.0.1:8080")),
        ("http://localhost", Endpoint("http", "localhost:80")),
        ("https://plugin.example:8443", Endpoint("https", "plugin.example:8443")),
        ("tcp://[::1]:9", Endpoint("http", "[::1]:9")),
    ],
)
def test_addresses_are_parsed_as_docker_reads_them(url: str, expected: Endpoint) -> None:
    assert Endpoint.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("127.0.0.1:8080", "Unknown protocol"),
        ("plugin.sock", "Unknown protocol"),
        ("ftp://host", "unsupported plugin address"),
        ("tcp://host:port", "invalid port"),
    ],
)
def test_bad_addresses_are_refused(url: str, complaint: str) -> None:
    with pytest.raises(errors.InvalidParameterError, match=complaint):
        Endpoint.parse(url)


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    plugins, etc, lib = tmp_path / "run", tmp_path / "etc", tmp_path / "lib"
    for directory in (plugins, etc, lib):
        directory.mkdir()
    return plugins, etc, lib


def _find(name: str, dirs: tuple[Path, Path, Path]) -> Endpoint | None:
    plugins, etc, lib = dirs
    return find_plugin(name, [plugins], [etc, lib])


def test_a_socket_is_found_directly_or_in_its_own_directory(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path]
) -> None:
    plugins = dirs[0]
    (plugins / "flat.sock").symlink_to(fake_plugin.socket)
    (plugins / "nested").mkdir()
    (plugins / "nested" / "nested.sock").symlink_to(fake_plugin.socket)
    assert _find("flat", dirs) == Endpoint("unix", str(plugins / "flat.sock"))
    assert _find("nested", dirs) == Endpoint("unix", str(plugins / "nested" / "nested.sock"))


def test_a_file_that_is_not_a_socket_is_passed_over(dirs: tuple[Path, Path, Path]) -> None:
    (dirs[0] / "plain.sock").write_text("")
    assert _find("plain", dirs) is None


def test_spec_files_in_order_of_directories_and_kinds(dirs: tuple[Path, Path, Path]) -> None:
    _, etc, lib = dirs
    (lib / "p.spec").write_text("tcp://127.0.0.1:1\n")
    assert _find("p", dirs) == Endpoint("http", "127.0.0.1:1")
    (etc / "p.json").write_text(json.dumps({"Addr": "tcp://127.0.0.1:2"}))
    assert _find("p", dirs) == Endpoint("http", "127.0.0.1:2")
    (etc / "p").mkdir()
    (etc / "p" / "p.spec").write_text("unix:///run/p.sock")
    assert _find("p", dirs) == Endpoint("unix", "/run/p.sock")
    (etc / "p.spec").write_text("  tcp://127.0.0.1:3  \n")
    assert _find("p", dirs) == Endpoint("http", "127.0.0.1:3")


def test_a_socket_comes_before_any_spec_file(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path]
) -> None:
    plugins, etc, _ = dirs
    (etc / "p.spec").write_text("tcp://127.0.0.1:1")
    (plugins / "p.sock").symlink_to(fake_plugin.socket)
    assert _find("p", dirs) == Endpoint("unix", str(plugins / "p.sock"))


def test_json_spec_carries_tls_for_https(dirs: tuple[Path, Path, Path]) -> None:
    spec = {
        "name": "p",
        "addr": "https://127.0.0.1:8443",
        "tlsconfig": {"CAFile": "/ca.pem", "InsecureSkipVerify": True},
    }
    (dirs[1] / "p.json").write_text(json.dumps(spec))
    assert _find("p", dirs) == Endpoint(
        "https", "127.0.0.1:8443", TLSConfig(ca_file="/ca.pem", insecure_skip_verify=True)
    )


@pytest.mark.parametrize(
    ("file", "text", "complaint"),
    [
        ("p.spec", "127.0.0.1:8080", "Unknown protocol"),
        ("p.json", "{", "malformed JSON"),
        ("p.json", '{"Name":"p"}', "no Addr"),
    ],
)
def test_a_broken_spec_file_is_an_error_naming_it(
    dirs: tuple[Path, Path, Path], file: str, text: str, complaint: str
) -> None:
    (dirs[1] / file).write_text(text)
    with pytest.raises(errors.InvalidParameterError, match=complaint) as caught:
        _find("p", dirs)
    assert file in str(caught.value)


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a/b", ".hidden", "a..b", "sp ace"])
def test_names_that_are_not_file_names_are_refused(
    dirs: tuple[Path, Path, Path], name: str
) -> None:
    with pytest.raises(errors.InvalidParameterError, match="invalid plugin name"):
        _find(name, dirs)


def _options(dirs: tuple[Path, Path, Path], **more: str) -> dict[str, str]:
    plugins, etc, lib = dirs
    return {"plugin_dirs": str(plugins), "spec_dirs": f"{etc}:{lib}", **more}


def test_host_loads_an_unclaimed_name_as_a_plugin_and_keeps_it(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path], site: Site
) -> None:
    fake_plugin.replies["/IpamDriver.GetCapabilities"] = (200, b'{"RequiresRequestReplay":true}')
    (dirs[0] / "lazy.sock").symlink_to(fake_plugin.socket)
    host = ipamkit.Host(options={"lazy": _options(dirs)})
    driver = host.driver("lazy")
    assert isinstance(driver, RemoteIpam)
    assert host.capability("lazy") == Capability(requires_request_replay=True)
    assert host.driver("lazy") is driver
    assert "lazy" in host.names()
    assert fake_plugin.calls() == ["/Plugin.Activate", "/IpamDriver.GetCapabilities"]


def test_an_unclaimed_name_without_a_plugin_is_not_found(
    dirs: tuple[Path, Path, Path], site: Site
) -> None:
    host = ipamkit.Host(options={"ghost": _options(dirs)})
    with pytest.raises(errors.DriverNotFoundError, match="ghost"):
        host.driver("ghost")
    with pytest.raises(errors.DriverNotFoundError):
        host.driver("not a plugin name")


def test_a_found_plugin_that_refuses_activation_fails_to_load(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path], site: Site
) -> None:
    fake_plugin.replies["/Plugin.Activate"] = (200, b'{"Implements":["VolumeDriver"]}')
    (dirs[0] / "vol.sock").symlink_to(fake_plugin.socket)
    host = ipamkit.Host(options={"vol": _options(dirs)})
    with pytest.raises(errors.DriverLoadError, match="does not implement the requested driver"):
        host.driver("vol")


def test_blocked_names_are_not_looked_up(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path], site: Site
) -> None:
    (dirs[0] / "lazy.sock").symlink_to(fake_plugin.socket)
    host = ipamkit.Host(options={"lazy": _options(dirs)}, blocked=["lazy"])
    with pytest.raises(errors.DriverNotFoundError):
        host.driver("lazy")
    assert fake_plugin.requests == []


def test_remote_is_configured_by_url_or_plugin_name(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path], site: Site
) -> None:
    by_url = ipamkit.Host(options={"remote": {"url": f"unix://{fake_plugin.socket}"}})
    assert isinstance(by_url.driver("remote"), RemoteIpam)
    (dirs[1] / "named.spec").write_text(f"unix://{fake_plugin.socket}")
    by_name = ipamkit.Host(options={"remote": _options(dirs, plugin="named")})
    assert isinstance(by_name.driver("remote"), RemoteIpam)
    assert fake_plugin.calls().count("/Plugin.Activate") == 2


def test_unconfigured_remote_says_which_options_it_needs() -> None:
    with pytest.raises(
        errors.DriverNotConfiguredError,
        match="remote driver is not configured: give option url=ADDRESS or plugin=NAME",
    ):
        ipamkit.Host().driver("remote")


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"url": "/a", "plugin": "b"}, "exclude each other"),
        ({"url": "/a", "colour": "red"}, "unknown remote driver options: colour"),
        ({"url": "/a", "timeout": "soon"}, "timeout='soon' is not a number"),
        ({"url": "/a", "retry": "inf"}, "retry='inf' is not a number"),
        ({"url": "/a", "timeout": "0"}, "timeout must be positive"),
        ({"plugin": "absent", "plugin_dirs": "/nonexistent", "spec_dirs": ""}, "no plugin named"),
    ],
)
def test_misconfigured_remote_fails_to_load_with_the_reason(
    options: dict[str, str], complaint: str, site: Site
) -> None:
    with pytest.raises(errors.DriverLoadError, match=complaint):
        ipamkit.Host(options={"remote": options}).driver("remote")


LIAR_PLUGIN = """
from ipamkit import hookimpl

@hookimpl
def ipamkit_register_drivers(registerer, options):
    pass

@hookimpl
def ipamkit_resolve_driver(name, registerer, options):
    return name == "claimed"
"""


def test_a_built_in_that_claims_a_name_must_register_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    (site.root / "liar_plugin.py").write_text(LIAR_PLUGIN)
    site.modules.append("liar_plugin")
    monkeypatch.setitem(ipamkit._discovery.BUILTIN_PLUGINS, "liar", "liar_plugin")
    host = ipamkit.Host()
    with pytest.raises(errors.DriverLoadError, match="claimed driver 'claimed' but did not"):
        host.driver("claimed")
    with pytest.raises(errors.DriverNotFoundError):
        host.driver("declined")


def test_options_of_a_name_that_is_no_plugin_either_are_not_judged(
    dirs: tuple[Path, Path, Path], site: Site
) -> None:
    host = ipamkit.Host(options={"ghost": _options(dirs, colour="red")})
    with pytest.raises(errors.DriverNotFoundError):
        host.driver("ghost")


def test_options_of_a_found_plugin_are_checked(
    fake_plugin: FakePlugin, dirs: tuple[Path, Path, Path], site: Site
) -> None:
    (dirs[0] / "lazy.sock").symlink_to(fake_plugin.socket)
    host = ipamkit.Host(options={"lazy": _options(dirs, colour="red")})
    with pytest.raises(errors.DriverLoadError, match="unknown remote driver options: colour"):
        host.driver("lazy")
    assert fake_plugin.requests == []
