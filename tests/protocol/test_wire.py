"""The protocol module: bodies byte for byte as Docker's daemon writes and reads them."""

from __future__ import annotations

import pytest

from ipamkit import errors
from ipamkit.protocol import wire


def test_paths_are_dockers() -> None:
    assert sorted(wire.MESSAGES) == [
        "/IpamDriver.GetCapabilities",
        "/IpamDriver.GetDefaultAddressSpaces",
        "/IpamDriver.ReleaseAddress",
        "/IpamDriver.ReleasePool",
        "/IpamDriver.RequestAddress",
        "/IpamDriver.RequestPool",
        "/Plugin.Activate",
    ]
    assert wire.MEDIA_TYPE == "application/vnd.docker.plugins.v1.2+json"


def test_request_pool_body_is_the_probed_one() -> None:
    body = wire.REQUEST_POOL.encode_request("l", "10.1.0.0/16", "10.1.1.0/24", {"a": "b"}, True)
    assert body == (
        b'{"AddressSpace":"l","Pool":"10.1.0.0/16","SubPool":"10.1.1.0/24",'
        b'"Options":{"a":"b"},"V6":true}\n'
    )


def test_gateway_request_body_is_the_probed_one() -> None:
    body = wire.REQUEST_ADDRESS.encode_request(
        "p1", "10.1.0.5", {"RequestAddressType": "com.docker.network.gateway"}
    )
    assert body == (
        b'{"PoolID":"p1","Address":"10.1.0.5",'
        b'"Options":{"RequestAddressType":"com.docker.network.gateway"}}\n'
    )


def test_every_field_is_sent_and_none_is_null() -> None:
    assert wire.REQUEST_POOL.encode_request("", "", "", None, False) == (
        b'{"AddressSpace":"","Pool":"","SubPool":"","Options":null,"V6":false}\n'
    )
    assert wire.REQUEST_ADDRESS.encode_request("p", "", None) == (
        b'{"PoolID":"p","Address":"","Options":null}\n'
    )
    assert wire.RELEASE_POOL.encode_request("p") == b'{"PoolID":"p"}\n'
    assert wire.RELEASE_ADDRESS.encode_request("p", "::1") == b'{"PoolID":"p","Address":"::1"}\n'


@pytest.mark.parametrize(
    "message", [wire.ACTIVATE, wire.GET_CAPABILITIES, wire.GET_DEFAULT_ADDRESS_SPACES]
)
def test_argument_less_calls_have_an_empty_body(message: wire.Message) -> None:
    assert message.encode_request() == b""


def test_encoding_sorts_map_keys_and_escapes_as_go_does() -> None:
    body = wire.encode({"Options": {"z": "1", "a": "<&>\u2028\u2029é"}})
    assert body == b'{"Options":{"a":"\\u003c\\u0026\\u003e\\u2028\\u2029\xc3\xa9","z":"1"}}\n'


def test_a_lone_surrogate_goes_out_as_replacement_characters() -> None:
    assert wire.encode({"k": "a\udc80b"}) == '{"k":"a\ufffd\ufffd\ufffdb"}\n'.encode()


def test_replies_are_read_case_insensitively_ignoring_unknown_fields() -> None:
    reply = b'{"poolid":"x","POOL":"10.0.0.0/8","data":null,"Extra":[1,2]}'
    assert wire.REQUEST_POOL.read_reply(reply, status=200) == ("x", "10.0.0.0/8", None)


def test_missing_reply_fields_are_zero_values_as_in_go() -> None:
    assert wire.GET_CAPABILITIES.read_reply(b"{}", status=200) == (False, False)
    assert wire.ACTIVATE.read_reply(b"{}", status=200) == ((),)


def test_invalid_utf8_is_read_as_replacement_characters() -> None:
    assert wire.RELEASE_POOL.decode_request(b'{"PoolID":"a\xffb"}') == ("a\ufffdb",)


def test_of_two_keys_differing_in_case_the_last_wins() -> None:
    assert wire.RELEASE_POOL.decode_request(b'{"PoolID":"a","poolid":"b"}') == ("b",)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{", "malformed JSON"),
        (b"\xff", "malformed JSON"),
        (b"[]", "expected a JSON object"),
        (b"[" * 2000, "nested too deeply"),
        (b'{"Options":' * 2000, "nested too deeply"),
        (b'{"PoolID":1,"Address":"","Options":null}', "'PoolID' must be a string, not a number"),
        (b'{"PoolID":"p","Address":"","Options":{"a":1}}', "'Options' must be an object"),
        (b'{"PoolID":"p","Address":"","Options":[]}', "'Options' must be an object"),
    ],
)
def test_malformed_or_mistyped_requests_are_wire_errors(body: bytes, complaint: str) -> None:
    with pytest.raises(wire.WireError, match=complaint):
        wire.REQUEST_ADDRESS.decode_request(body)


def test_absent_or_null_request_fields_are_zero_values_as_in_go() -> None:
    assert wire.REQUEST_POOL.decode_request(b'{"AddressSpace":"local","Pool":"10.0.0.0/8"}') == (
        "local",
        "10.0.0.0/8",
        "",
        None,
        False,
    )
    assert wire.REQUEST_ADDRESS.decode_request(b'{"PoolID":"p","Address":null}') == ("p", "", None)
    assert wire.RELEASE_POOL.decode_request(b"{}") == ("",)


def test_a_mistyped_reply_field_is_an_error() -> None:
    with pytest.raises(wire.WireError, match="'RequiresMACAddress' must be a boolean"):
        wire.GET_CAPABILITIES.read_reply(b'{"RequiresMACAddress":"yes"}', status=200)
    with pytest.raises(wire.WireError, match="malformed JSON"):
        wire.RELEASE_POOL.read_reply(b"not json", status=200)


def _error(message: wire.Message, body: bytes, status: int) -> errors.IpamError:
    with pytest.raises(errors.IpamError) as caught:
        message.read_reply(body, status=status)
    return caught.value


@pytest.mark.parametrize(("message", "cls"), sorted(wire.WELL_KNOWN.items()))
def test_well_known_messages_map_to_their_classes_on_both_channels(
    message: str, cls: type[errors.IpamError]
) -> None:
    restored = _error(wire.REQUEST_POOL, wire.encode({"Error": message}), 200)
    assert type(restored) is cls
    assert str(restored) == message
    assert type(_error(wire.REQUEST_POOL, wire.encode({"Err": message}), 500)) is cls


def test_other_texts_are_plugin_errors_worded_as_docker_words_them() -> None:
    failed = _error(wire.RELEASE_ADDRESS, b'{"Err":"boom-500"}', 500)
    assert type(failed) is errors.PluginError
    assert str(failed) == "IpamDriver.ReleaseAddress: boom-500"
    assert (failed.method, failed.text) == ("IpamDriver.ReleaseAddress", "boom-500")
    raw = _error(wire.GET_CAPABILITIES, b"404 page not found\n", 404)
    assert str(raw) == "IpamDriver.GetCapabilities: 404 page not found\n"
    answered = _error(wire.RELEASE_POOL, b'{"Error":"boom"}', 200)
    assert str(answered) == "remote: boom"
    assert isinstance(answered, errors.PluginError)


def test_a_200_reply_is_an_error_only_through_error() -> None:
    assert wire.RELEASE_POOL.read_reply(b'{"Err":"ignored"}', status=200) == ()
    assert wire.RELEASE_POOL.read_reply(b'{"Error":""}', status=200) == ()
    reply = b'{"Implements":["IpamDriver"],"Error":"ignored"}'
    assert wire.ACTIVATE.read_reply(reply, status=200) == (["IpamDriver"],)


def test_a_well_known_error_goes_out_with_dockers_text_and_comes_back_exact() -> None:
    error = errors.InvalidAddressSpaceError("unknown address space 'x'")
    fields = wire.error_reply(error)
    assert fields == {
        "Error": "invalid address space",
        "IpamkitError": "InvalidAddressSpaceError",
        "IpamkitMessage": "unknown address space 'x'",
    }
    restored = _error(wire.REQUEST_POOL, wire.encode(fields), 200)
    assert type(restored) is errors.InvalidAddressSpaceError
    assert str(restored) == "unknown address space 'x'"


def test_an_error_without_a_well_known_text_goes_out_with_its_message() -> None:
    fields = wire.error_reply(errors.NoMoreSubnetsError())
    assert fields["Error"] == errors.NoMoreSubnetsError.default_message


def test_only_contract_classes_are_restored_by_name() -> None:
    body = wire.encode({"Error": "x", "IpamkitError": "DriverLoadError", "IpamkitMessage": "y"})
    assert type(_error(wire.REQUEST_POOL, body, 200)) is errors.PluginError
