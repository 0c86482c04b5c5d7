"""Where a job-end callback may go: a public http(s) address, never inside the deployment.

A `callback_url` is checked twice with the same rule: when the job is submitted (a bad one
is refused with 422) and again by the worker just before it sends, with a fresh DNS answer,
which it then connects to directly, so a name that changed its answer in between (DNS
rebinding) cannot steer the POST to Redis, MLflow or a cloud metadata endpoint.

Refused: loopback, private (RFC 1918, RFC 4193), link-local (169.254.0.0/16, including the
metadata address 169.254.169.254, and fe80::/10), multicast, unspecified and reserved
addresses; the compose service names whatever they resolve to; plain http in production.
`callback_allowed_hosts` lets named internal receivers through.
"""

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from common.errors import CallbackRefusedError, InvalidFieldError
from common.settings import Settings

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class CallbackTarget:
    url: str
    scheme: str
    host: str  # as the URL names it (for the Host header and TLS)
    port: int
    addresses: list[str]  # what it resolved to, every one allowed

    def pinned_url(self, address: str) -> str:
        """The URL with its host replaced by one of its checked addresses."""
        parts = urlsplit(self.url)
        literal = f"[{address}]" if ":" in address else address
        netloc = f"{literal}:{self.port}"
        return SplitResult(parts.scheme, netloc, parts.path or "/", parts.query, "").geturl()

    @property
    def host_header(self) -> str:
        default = {"http": 80, "https": 443}[self.scheme]
        name = f"[{self.host}]" if ":" in self.host else self.host
        return name if self.port == default else f"{name}:{self.port}"


def forbidden_kind(address: str) -> str | None:
    """What kind of address this is if a callback may not reach it, else None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for kind, hit in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
    ):
        if hit:
            return kind
    return None


def check_callback_url(
    url: str, settings: Settings, resolve: Resolver = system_resolver
) -> CallbackTarget:
    """The target `url` names, resolved and checked; raises the error that says why not."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidFieldError(f"callback_url must be an absolute http(s) URL, not {url!r}")
    if settings.environment == "prod" and parts.scheme != "https":
        raise CallbackRefusedError("callback_url must use https in production")
    try:
        port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    except ValueError as exc:
        raise InvalidFieldError(f"callback_url has an invalid port: {exc}") from exc
    host = parts.hostname.lower().rstrip(".")
    allowed = host in {h.lower() for h in settings.callback_allowed_hosts}
    if not allowed and host in {h.lower() for h in settings.callback_refused_hosts}:
        raise CallbackRefusedError(
            f"callback_url names {host!r}, a service inside this deployment; it is refused"
        )
    try:
        addresses = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise CallbackRefusedError(f"callback_url host {host!r} does not resolve: {exc}") from exc
    if not addresses:
        raise CallbackRefusedError(f"callback_url host {host!r} has no address")
    if not allowed:
        for address in addresses:
            if kind := forbidden_kind(address):
                raise CallbackRefusedError(
                    f"callback_url host {host!r} resolves to {address}, a {kind} address;"
                    " callbacks only go to public addresses"
                )
    return CallbackTarget(url, parts.scheme, host, port, addresses)
