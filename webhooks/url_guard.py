"""The SSRF guard of webhook URLs: only public addresses, checked at registration and again before
every delivery (a host's DNS may change in between)."""

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

# NAT64's well-known prefix embeds an IPv4 address in its last 32 bits (RFC 6052).
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class URLRefused(Exception):
    """The URL is not one webhooks may be sent to. The message names the reason, never a secret."""


class URLUnresolvable(Exception):
    """The host name does not resolve (now); DNS may recover, so a delivery retries."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one tunnels to (mapped, 6to4, Teredo, NAT64), which decides where it goes."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_public(raw: str) -> bool:
    """Only globally routable unicast addresses: not loopback, private, link-local (cloud metadata),
    shared (CGNAT), reserved, unspecified or multicast."""
    address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(raw.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise URLUnresolvable(f"The host {host!r} does not resolve.") from exc
    return [str(info[4][0]) for info in infos]


def url_check(url: str) -> str:
    """The URL, normalized; raises URLRefused or URLUnresolvable.

    Every address the host resolves to must be public unless settings.WEBHOOKS_ALLOW_PRIVATE:
    a host with one private address among public ones could be steered to the private one.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise URLRefused("Not a valid URL.") from None
    if parts.scheme not in ("http", "https"):
        raise URLRefused("Only http and https URLs are allowed.")
    if not parts.hostname:
        raise URLRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise URLRefused("The URL must not contain credentials; requests are signed instead.")
    if not settings.WEBHOOKS_ALLOW_PRIVATE:
        addresses = _resolve(parts.hostname, port or (443 if parts.scheme == "https" else 80))
        if not addresses or not all(_is_public(address) for address in addresses):
            raise URLRefused(
                "The host resolves to a loopback, private, link-local or reserved address; "
                "only public addresses are allowed."
            )
    return urlunsplit(parts)


