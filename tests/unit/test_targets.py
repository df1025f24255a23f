"""Callback URL rules and the SSRF address policy (tidings.domain.targets)."""

from __future__ import annotations

import ipaddress

import pytest

from tidings.domain.targets import (
    MAX_URL_LENGTH,
    address_problem,
    host_problem,
    hostname,
    parse_host_literal,
    resolved_problem,
    url_problem,
)

ip = ipaddress.ip_address


# --------------------------------------------------------------------------- url_problem

GOOD_URLS = [
    pytest.param("https://example.com/hook", id="https-plain"),
    pytest.param("http://example.com/hook", id="http-plain"),
    pytest.param("https://example.com", id="no-path"),
    pytest.param("https://example.com:8443/a/b?x=1&y=2", id="port-and-query"),
    pytest.param("http://example.com:1/", id="port-1"),
    pytest.param("http://example.com:65535/", id="port-65535"),
    pytest.param("https://hooks.example.co.uk/p%20q", id="percent-encoded-path"),
    pytest.param("https://[2606:4700::1111]/hook", id="ipv6-literal"),
    pytest.param("https://8.8.8.8/hook", id="ipv4-literal"),
    pytest.param("HTTPS://Example.COM/Hook", id="uppercase-scheme-and-host"),
    pytest.param("https://xn--bcher-kva.example/", id="punycode-host"),
    pytest.param("https://example.com/" + "a" * (MAX_URL_LENGTH - 20), id="exactly-2048-chars"),
]


@pytest.mark.parametrize("url", GOOD_URLS)
def test_url_problem_accepts_well_formed_urls(url: str) -> None:
    assert len(url) <= MAX_URL_LENGTH
    assert url_problem(url, require_https=False) is None


BAD_URLS = [
    # (url, a word the explanation must contain)
    pytest.param("ftp://example.com/hook", "http", id="scheme-ftp"),
    pytest.param("file:///etc/passwd", "http", id="scheme-file"),
    pytest.param("javascript:alert(1)", "http", id="scheme-javascript"),
    pytest.param("gopher://example.com:70/_x", "http", id="scheme-gopher"),
    pytest.param("ws://example.com/socket", "http", id="scheme-ws"),
    pytest.param("data:text/plain,hello", "http", id="scheme-data"),
    pytest.param("example.com/hook", "http", id="no-scheme"),
    pytest.param("//example.com/hook", "http", id="scheme-relative"),
    pytest.param("", "http", id="empty-string"),
    pytest.param("https://user:pass@example.com/", "credentials", id="user-and-password"),
    pytest.param("https://user@example.com/", "credentials", id="user-only"),
    pytest.param("https://:pass@example.com/", "credentials", id="password-only"),
    pytest.param("https://@example.com/", "credentials", id="empty-userinfo"),
    pytest.param(
        "https://example.com@127.0.0.1/", "credentials", id="userinfo-that-looks-like-a-host"
    ),
    pytest.param("https://example.com/" + "a" * MAX_URL_LENGTH, "2048", id="over-2048-chars"),
    pytest.param("https://example.com/" + "a" * (MAX_URL_LENGTH - 19), "2048", id="2049-chars"),
    pytest.param("https://example.com/a b", "spaces", id="space-in-path"),
    pytest.param(" https://example.com/", "spaces", id="leading-space"),
    pytest.param("https://example.com/ ", "spaces", id="trailing-space"),
    pytest.param("https://exa mple.com/", "spaces", id="space-in-host"),
    pytest.param("https://example.com/\thook", "spaces", id="tab"),
    pytest.param("https://example.com/\nhook", "spaces", id="newline-LF"),
    pytest.param("https://example.com/\r\nX-Injected: 1", "spaces", id="CRLF-header-injection"),
    pytest.param("https://example.com/\x00", "control", id="NUL"),
    pytest.param("https://example.com/\x1b[31m", "control", id="ESC"),
    pytest.param("https://example.com/\x7f", "control", id="DEL"),
    pytest.param("https://example.com/\x85", "control", id="C1-NEL"),
    pytest.param("https://example.com/\x9b", "control", id="C1-CSI"),
    pytest.param("https://example.com/\u00a0", "spaces", id="no-break-space"),
    pytest.param("https://example.com:0/", "port", id="port-0"),
    pytest.param("https://example.com:00/", "port", id="port-00"),
    pytest.param("https://example.com:65536/", "parsed", id="port-65536"),
    pytest.param("https://example.com:99999/", "parsed", id="port-99999"),
    pytest.param("https://example.com:-1/", "parsed", id="port-negative"),
    pytest.param("https://example.com:http/", "parsed", id="port-not-a-number"),
    pytest.param("https://[::1/", "parsed", id="unclosed-ipv6-bracket"),
    pytest.param("https:///hook", "host", id="no-host"),
    pytest.param("https://:443/hook", "host", id="port-but-no-host"),
    pytest.param("https://example.com/hook#section", "fragment", id="fragment"),
    pytest.param("https://example.com/#/route", "fragment", id="fragment-spa-route"),
]


@pytest.mark.parametrize(("url", "word"), BAD_URLS)
def test_url_problem_refuses(url: str, word: str) -> None:
    problem = url_problem(url, require_https=False)
    assert problem is not None
    assert word in problem


@pytest.mark.parametrize(("url", "word"), BAD_URLS)
def test_url_problem_refuses_also_when_https_is_required(url: str, word: str) -> None:
    assert url_problem(url, require_https=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://example.com/hook", id="http-plain"),
        pytest.param("http://example.com:443/hook", id="http-on-port-443"),
        pytest.param("HTTP://example.com/hook", id="HTTP-uppercase"),
    ],
)
def test_require_https_refuses_http(url: str) -> None:
    assert url_problem(url, require_https=False) is None
    problem = url_problem(url, require_https=True)
    assert problem is not None
    assert "https" in problem


def test_require_https_accepts_https() -> None:
    assert url_problem("https://example.com/hook", require_https=True) is None


def test_max_url_length_is_2048() -> None:
    assert MAX_URL_LENGTH == 2048


# ------------------------------------------------------------------------ parse_host_literal


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        pytest.param("127.0.0.1", "127.0.0.1", id="dotted-quad"),
        pytest.param("2130706433", "127.0.0.1", id="decimal-2130706433"),
        pytest.param("0x7f000001", "127.0.0.1", id="hex-0x7f000001"),
        pytest.param("0X7F000001", "127.0.0.1", id="hex-uppercase-0X7F000001"),
        pytest.param("0177.0.0.1", "127.0.0.1", id="octal-0177.0.0.1"),
        pytest.param("017700000001", "127.0.0.1", id="octal-whole-017700000001"),
        pytest.param("127.1", "127.0.0.1", id="short-127.1"),
        pytest.param("127.0.1", "127.0.0.1", id="short-127.0.1"),
        pytest.param("0x7f.1", "127.0.0.1", id="hex-short-0x7f.1"),
        pytest.param("0", "0.0.0.0", id="zero"),
        pytest.param("10.1", "10.0.0.1", id="short-10.1"),
        pytest.param("0xa9.0xfe.0xa9.0xfe", "169.254.169.254", id="hex-dotted-metadata"),
        pytest.param("::1", "::1", id="ipv6-loopback"),
        pytest.param("[::1]", "::1", id="bracketed-ipv6"),
        pytest.param("::ffff:127.0.0.1", "::ffff:127.0.0.1", id="ipv4-mapped"),
        pytest.param("8.8.8.8", "8.8.8.8", id="public-v4"),
        pytest.param("2606:4700::1111", "2606:4700::1111", id="public-v6"),
    ],
)
def test_parse_host_literal_numbers(host: str, expected: str) -> None:
    assert parse_host_literal(host) == ip(expected)


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("example.com", id="name"),
        pytest.param("localhost", id="localhost"),
        pytest.param("cafe", id="hex-letters-name-cafe"),
        pytest.param("deadbeef", id="hex-letters-name-deadbeef"),
        pytest.param("dead.beef", id="hex-letters-dotted"),
        pytest.param("1.2.3.4.5", id="five-parts"),
        pytest.param("256.0.0.1", id="octet-256"),
        pytest.param("0x1ffffffff", id="hex-over-32-bits"),
        pytest.param("127.0.0.1.nip.io", id="ip-inside-a-name"),
        pytest.param("", id="empty"),
        pytest.param("127.0.0.1 ", id="trailing-space"),
    ],
)
def test_parse_host_literal_names_are_none(host: str) -> None:
    assert parse_host_literal(host) is None


# --------------------------------------------------------------------------- address_problem

REFUSED_ADDRESSES = [
    # (address, a word the explanation must contain)
    pytest.param("127.0.0.1", "loopback", id="v4-loopback-127.0.0.1"),
    pytest.param("127.255.255.254", "loopback", id="v4-loopback-127.255.255.254"),
    pytest.param("10.0.0.1", "private", id="rfc1918-10.0.0.1"),
    pytest.param("10.255.255.255", "private", id="rfc1918-10.255.255.255"),
    pytest.param("172.16.0.1", "private", id="rfc1918-172.16.0.1"),
    pytest.param("172.31.255.254", "private", id="rfc1918-172.31.255.254"),
    pytest.param("192.168.1.1", "private", id="rfc1918-192.168.1.1"),
    pytest.param("100.64.0.1", "carrier-grade", id="cgnat-100.64.0.1"),
    pytest.param("100.127.255.254", "carrier-grade", id="cgnat-100.127.255.254"),
    pytest.param("169.254.0.1", "link-local", id="v4-link-local-169.254.0.1"),
    pytest.param("169.254.169.254", "metadata", id="metadata-169.254.169.254"),
    pytest.param("169.254.170.2", "metadata", id="metadata-ecs-169.254.170.2"),
    pytest.param("100.100.100.200", "metadata", id="metadata-alibaba-100.100.100.200"),
    pytest.param("fd00:ec2::254", "metadata", id="metadata-v6-fd00:ec2::254"),
    pytest.param("224.0.0.1", "multicast", id="v4-multicast-224.0.0.1"),
    pytest.param("239.255.255.250", "multicast", id="v4-multicast-239.255.255.250"),
    pytest.param("0.0.0.0", "unspecified", id="v4-unspecified-0.0.0.0"),
    pytest.param("0.1.2.3", "address", id="this-network-0.1.2.3"),
    pytest.param("255.255.255.255", "address", id="broadcast-255.255.255.255"),
    pytest.param("240.0.0.1", "address", id="reserved-240.0.0.1"),
    pytest.param("192.0.2.1", "address", id="test-net-192.0.2.1"),
    pytest.param("198.18.0.1", "address", id="benchmark-198.18.0.1"),
    pytest.param("::1", "loopback", id="v6-loopback-::1"),
    pytest.param("::", "unspecified", id="v6-unspecified-::"),
    pytest.param("fc00::1", "private", id="ula-fc00::1"),
    pytest.param("fd12:3456:789a::1", "private", id="ula-fd12:3456:789a::1"),
    pytest.param("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private", id="ula-top-of-fc00::/7"),
    pytest.param("fe80::1", "link-local", id="v6-link-local-fe80::1"),
    pytest.param("fe80::1%eth0", "link-local", id="v6-link-local-with-zone"),
    pytest.param("ff02::1", "multicast", id="v6-multicast-ff02::1"),
    pytest.param("2001:db8::1", "address", id="v6-documentation-2001:db8::1"),
    pytest.param("::7f00:1", "address", id="v4-compatible-::127.0.0.1"),
    pytest.param("::ffff:127.0.0.1", "loopback", id="mapped-::ffff:127.0.0.1"),
    pytest.param("::ffff:10.0.0.1", "private", id="mapped-::ffff:10.0.0.1"),
    pytest.param("::ffff:169.254.169.254", "metadata", id="mapped-::ffff:169.254.169.254"),
    pytest.param("::ffff:100.64.0.1", "carrier-grade", id="mapped-::ffff:100.64.0.1"),
    pytest.param("::ffff:0.0.0.0", "unspecified", id="mapped-::ffff:0.0.0.0"),
    pytest.param("64:ff9b::7f00:1", "loopback", id="nat64-64:ff9b::7f00:1"),
    pytest.param("64:ff9b::a00:1", "private", id="nat64-64:ff9b::10.0.0.1"),
    pytest.param("64:ff9b::a9fe:a9fe", "metadata", id="nat64-64:ff9b::169.254.169.254"),
    pytest.param("2002:7f00:1::", "loopback", id="6to4-2002:7f00:1::"),
    pytest.param("2002:a00:1::1", "private", id="6to4-2002:a00:1::1"),
]


@pytest.mark.parametrize(("address", "word"), REFUSED_ADDRESSES)
def test_address_problem_refuses(address: str, word: str) -> None:
    problem = address_problem(ip(address))
    assert problem is not None
    assert word in problem


PUBLIC_ADDRESSES = [
    pytest.param("8.8.8.8", id="v4-google-8.8.8.8"),
    pytest.param("1.1.1.1", id="v4-cloudflare-1.1.1.1"),
    pytest.param("93.184.216.34", id="v4-93.184.216.34"),
    pytest.param("100.63.255.255", id="just-below-cgnat-100.63.255.255"),
    pytest.param("100.128.0.1", id="just-above-cgnat-100.128.0.1"),
    pytest.param("172.15.255.255", id="just-below-172.16/12"),
    pytest.param("172.32.0.1", id="just-above-172.16/12"),
    pytest.param("2606:4700::1111", id="v6-cloudflare-2606:4700::1111"),
    pytest.param("2001:4860:4860::8888", id="v6-google-2001:4860:4860::8888"),
    pytest.param("::ffff:8.8.8.8", id="mapped-public-::ffff:8.8.8.8"),
]


@pytest.mark.parametrize("address", PUBLIC_ADDRESSES)
def test_address_problem_allows_public(address: str) -> None:
    assert address_problem(ip(address)) is None


def test_address_problem_names_the_embedded_address() -> None:
    problem = address_problem(ip("::ffff:10.0.0.1"))
    assert problem is not None
    assert "10.0.0.1" in problem


# ------------------------------------------------------------------------------ host_problem

REFUSED_HOSTS = [
    # (host as urlsplit().hostname gives it, a word the explanation must contain)
    pytest.param("localhost", "local name", id="localhost"),
    pytest.param("LOCALHOST", "local name", id="LOCALHOST-uppercase"),
    pytest.param("localhost.", "local name", id="localhost-trailing-dot"),
    pytest.param("localhost..", "local name", id="localhost-two-trailing-dots"),
    pytest.param("api.localhost", "local name", id="api.localhost"),
    pytest.param("a.b.localhost", "local name", id="a.b.localhost"),
    pytest.param("App.LocalHost.", "local name", id="App.LocalHost.-mixed-case"),
    pytest.param("localhost.localdomain", "local name", id="localhost.localdomain"),
    pytest.param("ip6-localhost", "local name", id="ip6-localhost"),
    pytest.param("ip6-loopback", "local name", id="ip6-loopback"),
    pytest.param("127.0.0.1", "loopback", id="127.0.0.1"),
    pytest.param("2130706433", "loopback", id="decimal-2130706433"),
    pytest.param("0x7f000001", "loopback", id="hex-0x7f000001"),
    pytest.param("0177.0.0.1", "loopback", id="octal-0177.0.0.1"),
    pytest.param("127.1", "loopback", id="short-127.1"),
    pytest.param("0", "unspecified", id="zero-0"),
    pytest.param("0.0.0.0", "unspecified", id="0.0.0.0"),
    pytest.param("10.0.0.1", "private", id="rfc1918-10.0.0.1"),
    pytest.param("172.16.5.4", "private", id="rfc1918-172.16.5.4"),
    pytest.param("192.168.0.1", "private", id="rfc1918-192.168.0.1"),
    pytest.param("100.64.0.1", "carrier-grade", id="cgnat-100.64.0.1"),
    pytest.param("169.254.1.1", "link-local", id="link-local-169.254.1.1"),
    pytest.param("169.254.169.254", "metadata", id="metadata-169.254.169.254"),
    pytest.param("0xa9fea9fe", "metadata", id="metadata-hex-0xa9fea9fe"),
    pytest.param("224.0.0.251", "multicast", id="multicast-224.0.0.251"),
    pytest.param("::1", "loopback", id="v6-::1"),
    pytest.param("[::1]", "loopback", id="v6-bracketed-[::1]"),
    pytest.param("fc00::1", "private", id="ula-fc00::1"),
    pytest.param("fe80::1", "link-local", id="v6-link-local-fe80::1"),
    pytest.param("fd00:ec2::254", "metadata", id="metadata-v6-fd00:ec2::254"),
    pytest.param("::ffff:127.0.0.1", "loopback", id="mapped-::ffff:127.0.0.1"),
    pytest.param("::ffff:10.0.0.1", "private", id="mapped-::ffff:10.0.0.1"),
    pytest.param("64:ff9b::7f00:1", "loopback", id="nat64-64:ff9b::7f00:1"),
    pytest.param("FE80::1", "link-local", id="v6-uppercase-FE80::1"),
]


@pytest.mark.parametrize(("host", "word"), REFUSED_HOSTS)
def test_host_problem_refuses(host: str, word: str) -> None:
    problem = host_problem(host, allow_private=False)
    assert problem is not None
    assert word in problem


@pytest.mark.parametrize(("host", "word"), REFUSED_HOSTS)
def test_allow_private_lifts_host_checks(host: str, word: str) -> None:
    assert host_problem(host, allow_private=True) is None


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("example.com", id="example.com"),
        pytest.param("hooks.example.com", id="subdomain"),
        pytest.param("localhost.example.com", id="localhost-as-first-label"),
        pytest.param("mylocalhost", id="mylocalhost-no-dot"),
        pytest.param("localhostx", id="localhostx"),
        pytest.param("8.8.8.8", id="public-8.8.8.8"),
        pytest.param("1.1.1.1", id="public-1.1.1.1"),
        pytest.param("2606:4700::1111", id="public-v6-2606:4700::1111"),
        pytest.param("[2606:4700::1111]", id="public-v6-bracketed"),
        pytest.param("134744072", id="public-decimal-8.8.8.8"),
    ],
)
def test_host_problem_allows_public_hosts(host: str) -> None:
    assert host_problem(host, allow_private=False) is None


def test_host_problem_does_not_resolve_names() -> None:
    # A name that resolves to loopback is caught later by resolved_problem(), not here.
    assert host_problem("127.0.0.1.nip.io", allow_private=False) is None


# -------------------------------------------------------------------------- resolved_problem


@pytest.mark.parametrize(
    "addresses",
    [
        pytest.param(["8.8.8.8"], id="one-public-v4"),
        pytest.param(["2606:4700::1111"], id="one-public-v6"),
        pytest.param(["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"], id="v4-and-v6"),
    ],
)
def test_resolved_problem_allows_all_public(addresses: list[str]) -> None:
    assert resolved_problem([ip(a) for a in addresses], allow_private=False) is None


@pytest.mark.parametrize(
    ("addresses", "word"),
    [
        pytest.param(["127.0.0.1"], "loopback", id="only-127.0.0.1"),
        pytest.param(["8.8.8.8", "10.0.0.1"], "private", id="public-then-10.0.0.1"),
        pytest.param(["10.0.0.1", "8.8.8.8"], "private", id="10.0.0.1-then-public"),
        pytest.param(["2606:4700::1111", "::1"], "loopback", id="public-v6-then-::1"),
        pytest.param(["8.8.8.8", "169.254.169.254"], "metadata", id="public-then-metadata"),
        pytest.param(["1.1.1.1", "::ffff:127.0.0.1"], "loopback", id="public-then-mapped-loop"),
        pytest.param(["1.1.1.1", "64:ff9b::7f00:1"], "loopback", id="public-then-nat64-loop"),
        pytest.param(["100.64.1.1"], "carrier-grade", id="only-cgnat"),
        pytest.param(["fe80::1"], "link-local", id="only-fe80::1"),
    ],
)
def test_resolved_problem_refuses_if_any_address_is_internal(
    addresses: list[str], word: str
) -> None:
    problem = resolved_problem([ip(a) for a in addresses], allow_private=False)
    assert problem is not None
    assert word in problem
    assert "resolves to" in problem


def test_resolved_problem_with_allow_private_accepts_internal_addresses() -> None:
    addresses = [ip(a) for a in ("127.0.0.1", "10.0.0.1", "169.254.169.254", "::1", "fe80::1")]
    assert resolved_problem(addresses, allow_private=True) is None


# ---------------------------------------------------------------------------------- hostname


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        pytest.param("https://example.com/hook", "example.com", id="plain"),
        pytest.param("https://Example.COM:8443/x", "example.com", id="mixed-case-with-port"),
        pytest.param("http://[::1]:8080/", "::1", id="bracketed-ipv6"),
        pytest.param("http://[2606:4700::1111]/", "2606:4700::1111", id="public-ipv6"),
        pytest.param("http://2130706433/", "2130706433", id="decimal-host"),
        pytest.param("http://localhost./", "localhost.", id="trailing-dot"),
    ],
)
def test_hostname(url: str, expected: str) -> None:
    assert hostname(url) == expected


# ----------------------------------------- the whole policy, as callers chain it for one URL


def _refusal(url: str, *, allow_private: bool = False) -> str | None:
    return url_problem(url, require_https=False) or host_problem(
        hostname(url), allow_private=allow_private
    )


INTERNAL_URLS = [
    pytest.param("http://localhost:8000/hook", id="localhost"),
    pytest.param("http://api.localhost/hook", id="api.localhost"),
    pytest.param("http://127.0.0.1/hook", id="127.0.0.1"),
    pytest.param("http://2130706433/hook", id="decimal-2130706433"),
    pytest.param("http://0x7f000001/hook", id="hex-0x7f000001"),
    pytest.param("http://0177.0.0.1/hook", id="octal-0177.0.0.1"),
    pytest.param("http://127.1/hook", id="short-127.1"),
    pytest.param("http://0/hook", id="zero"),
    pytest.param("http://[::1]/hook", id="v6-loopback"),
    pytest.param("http://[::ffff:127.0.0.1]/hook", id="mapped-::ffff:127.0.0.1"),
    pytest.param("http://[::ffff:10.0.0.1]/hook", id="mapped-::ffff:10.0.0.1"),
    pytest.param("http://[64:ff9b::7f00:1]/hook", id="nat64-64:ff9b::7f00:1"),
    pytest.param("http://[fe80::1%25eth0]/hook", id="v6-link-local-with-zone"),
    pytest.param("http://[fc00::1]/hook", id="ula-fc00::1"),
    pytest.param("http://169.254.169.254/latest/meta-data/", id="metadata-169.254.169.254"),
    pytest.param("http://[fd00:ec2::254]/latest/meta-data/", id="metadata-fd00:ec2::254"),
    pytest.param("http://100.64.0.1/hook", id="cgnat-100.64.0.1"),
    pytest.param("http://192.168.1.1/hook", id="rfc1918-192.168.1.1"),
    pytest.param("http://224.0.0.1/hook", id="multicast-224.0.0.1"),
    pytest.param("http://0.0.0.0:8000/hook", id="unspecified-0.0.0.0"),
]


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_callback_urls_are_refused(url: str) -> None:
    assert url_problem(url, require_https=False) is None  # the shape is fine...
    assert _refusal(url) is not None  # ...the target is not


@pytest.mark.parametrize("url", INTERNAL_URLS)
def test_internal_callback_urls_pass_with_allow_private(url: str) -> None:
    assert _refusal(url, allow_private=True) is None


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("https://8.8.8.8/hook", id="8.8.8.8"),
        pytest.param("https://[2606:4700::1111]/hook", id="2606:4700::1111"),
        pytest.param("https://hooks.example.com/tidings", id="name"),
    ],
)
def test_public_callback_urls_are_allowed(url: str) -> None:
    assert _refusal(url) is None
