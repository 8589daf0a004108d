"""Outbound calls to URLs that tenants configure (webhooks, fulfilment partners) must not
reach the platform's own network: these say whether an address is public and resolve a URL
to addresses that are."""

import ipaddress
import socket
import urllib.parse


def address_is_public(address: str) -> bool:
    """Whether an IP address is a public, routable one (not private, loopback, link-local,
    multicast, reserved or unspecified, nor an IPv6 form of one)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    candidates = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        # ::ffff:10.0.0.1 and 64:ff9b::/96-style embeddings reach the IPv4 address.
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                candidates.append(embedded)
    return all(
        candidate.is_global
        and not (
            candidate.is_private
            or candidate.is_loopback
            or candidate.is_link_local
            or candidate.is_multicast
            or candidate.is_reserved
            or candidate.is_unspecified
        )
        for candidate in candidates
    )


def url_addresses(url: str) -> tuple[str, str, tuple[str, ...]]:
    """(scheme, host, the addresses the host resolves to) of an http(s) URL; ValueError with
    a reason a person can read for anything else."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"Not a valid URL: {exc}.") from exc
    scheme = (parts.scheme or "").lower()
    if scheme not in ("http", "https"):
        raise ValueError("Only http and https URLs are allowed.")
    host = parts.hostname
    if not host:
        raise ValueError("The URL has no host.")
    try:
        infos = socket.getaddrinfo(host, port or (443 if scheme == "https" else 80), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError) as exc:
        raise ValueError(f"The host {host} cannot be resolved.") from exc
    addresses = tuple(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise ValueError(f"The host {host} cannot be resolved.")
    return scheme, host, addresses
