"""The HTTP edge: which requests reach the handlers, and the headers every response carries.

A page on any other site can make a visitor's browser talk to this server: open a WebSocket (browsers do
not apply the same-origin policy to them), send a `no-cors` POST with a `text/plain` body, or reach a
server on localhost through a DNS name that the attacker rebinds to 127.0.0.1. So, before any handler:

- `Host` must name this server: `localhost`, an IP address, the name it is bound to, this machine's host
  name, or one given with `serve --allow-host` (DNS rebinding comes with the attacker's name in `Host`);
- `Origin`, when a request carries one (browsers do on every WebSocket upgrade and cross-origin POST), must
  be this server's own (same host and port as `Host`) or one given with `serve --allow-origin`; requests
  without `Origin` (the Python client, gateways, curl) are not browsers' and pass;
- a body must have one of its route's media types (`application/json` for JSON routes): the types a page
  can send without the browser asking the server first (text/plain, forms) are none of them; and it must
  arrive within BODY_TIMEOUT_S (`read_body`), as the head must within the header timeout (connections.py).

Behind a reverse proxy (docs/DEPLOY.md) every connection comes from the proxy's address. With `serve
--trusted-proxy CIDR` the client's address (`request.remote`: the audit trail, logs) is the right-most address of
`X-Forwarded-For` that is not a trusted proxy, but only when the connection itself comes from a trusted proxy;
from anyone else the header is ignored, so nobody can claim another address by sending it (`client_address`).

Refusals are 403 / 415 with a JSON body that says what to change. Every response carries a
Content-Security-Policy under which the shipped web client runs (its inline scripts by hash, WebAssembly
for the meshopt decoder, workers from blob: URLs), `Referrer-Policy: no-referrer` (join links carry a
token), `X-Content-Type-Options: nosniff` and `frame-ancestors 'none'` / `X-Frame-Options: DENY`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import msgspec
from aiohttp import hdrs, web

# Host names a local server always answers to (a DNS name that resolves elsewhere cannot be one of them).
LOCAL_HOSTS: Final = frozenset({"localhost", "localhost.localdomain"})
# Addresses that mean "every interface": no name to add for them.
ANY_ADDRESS: Final = frozenset({"", "0.0.0.0", "::"})
# What a `Host` header may look like at all: a name or IPv4 address, or a bracketed IPv6 one, and a port.
_HOST_SYNTAX = re.compile(r"(?:[a-z0-9_.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?", re.IGNORECASE)
# Inline <script> elements of index.html, whose text is hashed into the CSP (`src` ones are 'self').
_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)

# X-Forwarded-For entries looked at, right to left, for the client's address: a chain of proxies is short.
MAX_FORWARDED_HOPS: Final = 16

# Seconds to receive a whole request body (4 MiB at most): a phone on a slow uplink needs ~30 s, a slow-body
# attacker holds its connection no longer.
BODY_TIMEOUT_S: Final = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def host_name(host: str) -> str:
    """The name in a `Host` header or URL authority, without port, brackets and trailing dot, lowercase."""
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        return host[1 : host.find("]")] if "]" in host else host
    name, _, port = host.rpartition(":")
    if name and port.isdigit() and ":" not in name:
        host = name
    return host.rstrip(".")


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an --allow-origin value; ValueError with what to give instead."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"bad origin {url!r}: give scheme, host and port only, e.g. https://twin.example.com:8443")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(f"bad origin {url!r}: give scheme, host and port only, e.g. https://twin.example.com:8443")
    return f"{parts.scheme}://{parts.netloc}".lower()


def check_host_name(name: str) -> str:
    """An --allow-host value as compared with `Host`; ValueError for one that cannot be a host name."""
    host = host_name(name)
    if not host or any(c in host for c in "/@ ?#"):
        raise ValueError(f"bad host name {name!r}: give a name like twin.example.com (no scheme, no path)")
    return host


def ip_address(text: str) -> Address | None:
    """The address written in `text` (an IPv4-mapped IPv6 address as its IPv4 one); None if it is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


def trusted_network(text: str) -> Network:
    """A --trusted-proxy value: an address or a network (CIDR); ValueError saying what to give."""
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError as exc:
        raise ValueError(
            f"bad trusted proxy {text!r} ({exc}): give the proxy's address or network, e.g. 127.0.0.1 or 10.0.2.0/24"
        ) from None


@dataclass(frozen=True)
class EdgePolicy:
    """Whom the server answers: the host names of `Host` and the origins of `Origin` it accepts; and whose
    `X-Forwarded-For` names the client (the trusted proxies)."""

    allow_hosts: frozenset[str] = frozenset()  # names besides LOCAL_HOSTS and IP addresses, from host_name()
    allow_origins: frozenset[str] = frozenset()  # besides the server's own, from origin_of()
    trusted_proxies: tuple[Network, ...] = ()  # --trusted-proxy: reverse proxies whose X-Forwarded-For counts

    @classmethod
    def for_server(
        cls, bound_host: str = "", hosts: Iterable[str] = (), origins: Iterable[str] = (), proxies: Iterable[str] = ()
    ) -> EdgePolicy:
        """The policy of a server bound to `bound_host`: that name, this machine's name, and the extra
        `hosts` (--allow-host), `origins` (--allow-origin) and trusted `proxies` (--trusted-proxy). ValueError for a
        malformed one."""
        names = {check_host_name(h) for h in hosts} | {host_name(socket.gethostname())}
        if bound_host not in ANY_ADDRESS:
            names.add(host_name(bound_host))
        trusted = tuple(trusted_network(proxy) for proxy in proxies)
        return cls(frozenset(names), frozenset(origin_of(o) for o in origins), trusted)

    def trusts(self, address: Address) -> bool:
        return any(address in network for network in self.trusted_proxies)

    def client_address(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address of a connection from `peer` carrying the X-Forwarded-For values `forwarded_for`.

        `peer` itself unless it is a trusted proxy. From a trusted proxy: the right-most address of the header
        that is not a trusted proxy (each proxy appends the address it was reached from, so what is left of the
        right-most untrusted entry was written by the client and proves nothing), or the left-most when every
        one is trusted. When an entry read before the client's is not an address (a port, a name, `unknown`,
        empty), or more than MAX_FORWARDED_HOPS entries are trusted proxies, the header is ignored: `peer`."""
        address = ip_address(peer)
        if address is None or not self.trusts(address):
            return peer
        hops = [hop for value in forwarded_for for hop in value.split(",")]
        client = peer
        for hop in reversed(hops[-MAX_FORWARDED_HOPS:]):
            forwarded = ip_address(hop)
            if forwarded is None:
                return peer
            client = str(forwarded)
            if not self.trusts(forwarded):
                return client
        return client if len(hops) <= MAX_FORWARDED_HOPS else peer

    def host_allowed(self, host: str) -> bool:
        if not _HOST_SYNTAX.fullmatch(host.strip()):
            return False
        name = host_name(host)
        return name in LOCAL_HOSTS or name in self.allow_hosts or _is_address(name)

    def origin_allowed(self, origin: str, host: str) -> bool:
        """The server's own origin (same authority as `Host`) or an allow-listed one; never "null"."""
        origin = origin.strip().lower().rstrip("/")
        if origin in self.allow_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.strip().lower()


EDGE: Final = web.AppKey("edge", EdgePolicy)
# (method, route path) -> media types its body may have; filled from the route table by `add_routes`.
BODY_TYPES: Final = web.AppKey("body_types", dict)
CSP: Final = web.AppKey("csp", str)


def _refuse(status: int, error: str, detail: str) -> web.Response:
    """The API's error body (`api.ApiError`)."""
    body = msgspec.json.encode({"error": error, "detail": detail})
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def edge_checks(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The client's address (behind a trusted proxy), then Host, Origin and body media type, in that order, before
    any handler (and before a WebSocket upgrade)."""
    policy = request.app[EDGE]
    if policy.trusted_proxies:
        peer = request.remote or ""
        client = policy.client_address(peer, request.headers.getall(hdrs.X_FORWARDED_FOR, ()))
        if client != peer:
            request = request.clone(remote=client)
    host = request.headers.get(hdrs.HOST)
    if host is not None and not policy.host_allowed(host):
        name = host_name(host)
        return _refuse(403, "forbidden_host", f"this server does not answer to the name {name!r}; if that is its "
                       f"name, start it with --allow-host {name}")  # fmt: skip
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and not policy.origin_allowed(origin, request.host):
        return _refuse(403, "forbidden_origin", f"requests from pages on {origin[:200]!r} are refused (cross-site); "
                       f"to allow that site, start the server with --allow-origin {origin[:200]}")  # fmt: skip
    route = request.match_info.route.resource
    types = request.app[BODY_TYPES].get((request.method, route.canonical if route else ""))
    if types and request.content_type not in types:
        return _refuse(415, "unsupported_media_type", f"{request.method} {request.path} takes a body of type "
                       f"{' or '.join(types)}, not {request.content_type!r}: send the header "
                       f"'Content-Type: {types[0]}'")  # fmt: skip
    return await handler(request)


async def read_body(request: web.Request) -> bytes:
    """The request's body, or 408 if it does not arrive within BODY_TIMEOUT_S."""
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            return await request.read()
    except TimeoutError:
        body = msgspec.json.encode({"error": "body_timeout", "detail": f"the body took over {BODY_TIMEOUT_S:g} s"})
        raise web.HTTPRequestTimeout(text=body.decode(), content_type="application/json") from None


def inline_script_hashes(index: Path | None) -> list[str]:
    """CSP hash sources of the inline scripts of the web client's index.html (its boot code)."""
    if index is None or not index.is_file():
        return []
    found = _INLINE_SCRIPT.findall(index.read_text(encoding="utf-8"))
    return [f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'" for s in found]


def content_security_policy(script_hashes: Iterable[str]) -> str:
    """What the web client needs and nothing more: its own scripts (plus the inline boot code by hash) and
    WebAssembly (the meshopt decoder), workers from its files and blob: URLs (the download worker), images
    from blob: and data: URLs (attachments, the icon), fetches of blob: / data: URLs (GLTFLoader's textures).
    WebSocket URLs of the same host are added per request (`ws:` is not 'self' in every browser)."""
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'wasm-unsafe-eval' {' '.join(script_hashes)}".rstrip(),
            "worker-src 'self' blob:",
            "img-src 'self' blob: data:",
            "style-src 'self'",
            "connect-src 'self' blob: data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def security_headers(csp: str, host: str) -> Mapping[str, str]:
    ws = f" ws://{host} wss://{host}" if host else ""
    return {
        "Content-Security-Policy": csp.replace("connect-src 'self'", f"connect-src 'self'{ws}", 1),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
    }


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: every response, files, errors and WebSocket upgrades included."""
    host = request.headers.get(hdrs.HOST, "")
    if host and not request.app[EDGE].host_allowed(host):
        host = ""  # never echo a name the server refused into a header
    for name, value in security_headers(request.app[CSP], host).items():
        response.headers.setdefault(name, value)


def install(app: web.Application, policy: EdgePolicy, index: Path | None) -> None:
    """Put the checks in front of every handler and the headers on every response of `app`."""
    app[EDGE] = policy
    app[CSP] = content_security_policy(inline_script_hashes(index))
    app.setdefault(BODY_TYPES, {})
    app.middlewares.append(edge_checks)
    app.on_response_prepare.append(add_security_headers)
