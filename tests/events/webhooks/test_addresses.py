"""The private-address guard: what a webhook may reach, judged on addresses, on URLs as
saved, and on names as resolved before each delivery."""

from __future__ import annotations

import ipaddress

import pytest

from payrail.events.webhooks.addresses import (
    AddressRefused,
    Resolver,
    check_url,
    literal_address,
    pinned_address,
    refusal,
)

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # carrier-grade NAT
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "198.18.0.1",  # benchmarking
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "2001:db8::1",
    "::ffff:127.0.0.1",  # IPv4-mapped
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "fec0::1",  # site-local (deprecated, still routed in places)
]
ALLOWED = ["93.184.215.14", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_and_special_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_refusals_say_why() -> None:
    assert refusal(ipaddress.ip_address("127.0.0.1")) == "a loopback address"
    assert refusal(ipaddress.ip_address("::ffff:10.0.0.1")) == "a private address"
    assert refusal(ipaddress.ip_address("169.254.169.254")) == "a link-local address"


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.1", "127.0.0.1"),
        ("0x7f.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("::ffff:7f00:1", "::ffff:127.0.0.1"),
        ("example.com", None),
    ],
)
def test_literal_addresses_in_every_form_the_resolver_takes(host: str, address: str | None) -> None:
    expected = None if address is None else ipaddress.ip_address(address)
    assert literal_address(host) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "https://127.1:8443/hook",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://localhost:8080/",
        "http://api.localhost/",
        "http://0.0.0.0/",
    ],
)
def test_urls_naming_private_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(ValueError, match="must not point at"):
        check_url(url, allow_private=False)
    check_url(url, allow_private=True)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/", "http or https"),
        ("example.com/hook", "http or https"),
        ("https:///hook", "must name a host"),
        ("https://user:pw@example.com/", "user info"),
        ("https://example.com:99999/", "valid host and port"),
        ("https://exa mple.com/", "ASCII"),
        ("https://example.com/" + "a" * 2100, "2048"),
        ("https://bücher.example/", "ASCII"),
    ],
)
def test_malformed_urls_are_refused(url: str, problem: str) -> None:
    for allow in (False, True):
        with pytest.raises(ValueError, match=problem) as raised:
            check_url(url, allow_private=allow)
        assert "pw@" not in str(raised.value), "messages never quote the URL"


def test_public_urls_pass() -> None:
    for url in ("https://example.com/hooks?token=abc", "http://93.184.215.14:8080/x"):
        check_url(url, allow_private=False)


def resolver(table: dict[str, list[str]]) -> Resolver:
    async def resolve(host: str, port: int) -> list[str]:
        return table.get(host, [])

    return resolve


async def test_every_resolved_address_must_be_public() -> None:
    table = {
        "hooks.example": ["93.184.215.14", "2606:4700:4700::1111"],
        "rebind.example": ["93.184.215.14", "127.0.0.1"],
        "mapped.example": ["::ffff:169.254.169.254"],
    }
    resolve = resolver(table)
    found = await pinned_address("hooks.example", 443, allow_private=False, resolve=resolve)
    assert found == "93.184.215.14"
    for host in ("rebind.example", "mapped.example"):
        with pytest.raises(AddressRefused):
            await pinned_address(host, 443, allow_private=False, resolve=resolve)
    assert (
        await pinned_address("rebind.example", 443, allow_private=True, resolve=resolve)
        == "93.184.215.14"
    )
    with pytest.raises(AddressRefused, match="no address"):
        await pinned_address("nowhere.example", 443, allow_private=True, resolve=resolve)
    # A literal is judged as it is, without asking DNS.
    with pytest.raises(AddressRefused, match="loopback"):
        await pinned_address("2130706433", 80, allow_private=False, resolve=resolve)
