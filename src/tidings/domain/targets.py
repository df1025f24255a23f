"""Callback URL rules and the address policy that keeps webhooks off internal networks.

`url_problem()` checks the URL's shape; `address_problem()` checks one IP address. The
network side (resolving names) lives with the callers, who pass the addresses in.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    ipaddress.ip_address("fd00:ec2::254"),  # AWS IMDS over IPv6
}
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def parse_host_literal(host: str) -> IPAddress | None:
    """The address a host written as a number stands for, or None for a name.

    Besides dotted quads and IPv6 this catches what C resolvers also accept:
    `2130706433`, `0x7f000001`, `0177.0.0.1`, `127.1`.
    """
    text = host.strip("[]")
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or not all(c in "0123456789abcdefxABCDEFX." for c in text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def address_problem(address: IPAddress) -> str | None:
    """Why a webhook may not be sent to `address`, or None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_problem(embedded)
    if address in _METADATA:
        return f"{address} is a cloud metadata address"
    checks = (
        (address.is_loopback, "a loopback"),
        (address.is_unspecified, "an unspecified"),
        (address.is_link_local, "a link-local"),
        (address.is_multicast, "a multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT, "a carrier-grade NAT"),
        (address.is_private, "a private"),
        (address.is_reserved, "a reserved"),
        (not address.is_global, "a non-public"),
    )
    for hit, kind in checks:
        if hit:
            return f"{address} is {kind} address"
    return None


def url_problem(url: str, *, require_https: bool) -> str | None:
    """Why `url` cannot be a callback URL, or None. Does not look at the network."""
    if len(url) > MAX_URL_LENGTH:
        return f"the URL is longer than {MAX_URL_LENGTH} characters"
    if any(c.isspace() or ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in url):  # C0, DEL, C1
        return "the URL contains spaces or control characters"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"the URL cannot be parsed ({exc})"
    if parts.scheme not in ("http", "https"):
        return "the URL must start with http:// or https://"
    if require_https and parts.scheme != "https":
        return "this server accepts https:// callback URLs only"
    if parts.username is not None or parts.password is not None:
        return "the URL must not carry credentials (user:password@)"
    if not parts.hostname:
        return "the URL has no host"
    if port == 0:
        return "the URL's port must be between 1 and 65535"
    if parts.fragment:
        return "the URL must not have a #fragment"
    return None


def host_problem(host: str, *, allow_private: bool) -> str | None:
    """Why a callback to this host is refused without resolving it, or None."""
    if allow_private:
        return None
    name = host.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return f"{host} is a local name"
    literal = parse_host_literal(name)
    if literal is not None:
        return address_problem(literal)
    return None


def resolved_problem(addresses: list[IPAddress], *, allow_private: bool) -> str | None:
    """Why a host that resolves to `addresses` is refused, or None: every one must be public."""
    if allow_private:
        return None
    for address in addresses:
        problem = address_problem(address)
        if problem is not None:
            return f"the host resolves to {problem}"
    return None


def hostname(url: str) -> str:
    """The host of a URL that `url_problem` accepted."""
    return urlsplit(url).hostname or ""
