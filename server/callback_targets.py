"""Where decision callbacks may go: the operator's ``[callbacks] allowed_urls`` prefixes.

The property protected: a signed callback reaches only an endpoint the operator wrote down —
the same scheme, host, port and path (prefix) — and never an internal address the operator
did not name literally, whatever URL the agent sends and whatever its DNS answers.

* A URL is parsed by :func:`parse_url`, strictly: http or https, no user name, no fragment,
  only the characters RFC 3986 allows, an ASCII host name or an IP literal (no trailing dot,
  no numeric forms like ``127.1`` or ``0x7f000001``), a port in 1-65535, and a path without
  empty, ``.`` or ``..`` segments (encoded or with ``;params``) and without encoded ``/``,
  ``\\`` or ``%``. What fails is refused, never "normalised" into something else.
* A prefix (:func:`parse_prefix`) is such a URL without a query. A URL is under a prefix when
  the scheme, host (case-insensitive; IP literals by value), and effective port (443/80 when
  not written) are equal, and the path is equal — or, for a prefix path ending in ``/``,
  starts with it. So ``https://h/signoff`` allows exactly that path, ``https://h/signoff/``
  everything below it, and neither allows ``/signoff-evil``.
* The deprecated ``allowed_hosts`` entries map to ``https://HOST/`` (https only, the default
  port, any path); ``*.example.com`` keeps meaning any name below example.com.
* At delivery, a host name is resolved once; every address must be public (see
  :func:`address_problem`), and the POST connects to a checked address, sending the name as
  ``Host`` and TLS SNI (the certificate is verified against the name). An IP literal the
  operator wrote in a prefix is called as written, private or not.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986: unreserved, reserved (minus '#', '[' and ']' outside the host) and '%'. No space,
# no control character, no '\\', '{', '}', '|', '^', '`', '"', '<', '>' — so the signed string
# "timestamp.url.{json" has exactly one split.
_URL_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?@!$&'()*+,;=%\[\]]*")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_NAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*")
_ESCAPE = re.compile(r"%(..)?")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)
_EMBEDDING = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"),
              ipaddress.ip_network("::/96"))  # fmt: skip  # NAT64 and IPv4-compatible: the last 32 bits
_TEREDO = ipaddress.ip_network("2001::/32")


@dataclass(frozen=True, slots=True)
class Target:
    """A callback URL (or an allowed prefix), parsed and checked."""

    scheme: str
    host: str  # lower-case name, or the IP's compressed text
    ip: IPAddress | None  # when the host is an IP literal
    port: int  # the effective port
    path: str  # starts with "/"
    query: str = ""
    wildcard: bool = False  # a deprecated "*.example.com" entry: any name below ``host``

    @property
    def authority(self) -> str:
        """``host[:port]`` as a Host header carries it: IPv6 in brackets, no default port."""
        host = f"[{self.host}]" if isinstance(self.ip, ipaddress.IPv6Address) else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        """The canonical form, which the signature covers: scheme and host in lower case, no
        default port, the path and query as written."""
        return f"{self.scheme}://{self.authority}{self.path}" + (f"?{self.query}" if self.query else "")

    @property
    def label(self) -> str:
        """How a prefix reads to the operator: ``https://*.example.com/*`` for a wildcard, any path."""
        url = self.url.replace("://", "://*.", 1) if self.wildcard else self.url
        return url + "*" if self.path.endswith("/") else url

    def at(self, ip: IPAddress) -> str:
        """This URL with the host replaced by ``ip`` (what the connection goes to)."""
        host = f"[{ip.compressed}]" if isinstance(ip, ipaddress.IPv6Address) else ip.compressed
        return f"{self.scheme}://{host}:{self.port}{self.path}" + (f"?{self.query}" if self.query else "")


def parse_url(url: str) -> Target:
    """Parse a callback URL; ``ValueError`` says what is wrong without repeating the URL."""
    if "#" in url:
        raise ValueError("it has a fragment ('#…'); remove it")
    if not _URL_CHARS.fullmatch(url):
        raise ValueError("it contains a character URLs may not carry (a space, a control character, '\\', "
                         "'#', '{', '\"', a non-ASCII letter…); percent-encode it")  # fmt: skip
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError("it is not an http:// or https:// URL")
    authority, slash, tail = rest.partition("/")
    if "?" in authority:
        authority, _, query_only = authority.partition("?")
        slash, tail = "", "?" + query_only
    path, _, query = (slash + tail).partition("?")
    if "@" in authority:
        raise ValueError("it has a user name ('user@host'); callbacks carry no credentials in the URL")
    host, ip, port = _authority(authority, scheme)
    path = path or "/"
    if "[" in path + query or "]" in path + query:
        raise ValueError("its path or query has a '[' or ']'; percent-encode it")
    _check_path(path)
    return Target(scheme, host, ip, port, path, query)


def _authority(authority: str, scheme: str) -> tuple[str, IPAddress | None, int]:
    ip: IPAddress | None = None
    port_text: str | None = None
    if authority.startswith("["):
        inner, close, after = authority[1:].partition("]")
        if not close:
            raise ValueError("its IPv6 address has no closing ']'")
        if "%" in inner:
            raise ValueError("its IPv6 address has a zone ('%…'); zones are not allowed")
        try:
            ip = ipaddress.IPv6Address(inner)
        except ValueError:
            raise ValueError("its host is not a valid IPv6 address") from None
        host = ip.compressed
        if after and not after.startswith(":"):
            raise ValueError("its host is followed by something other than ':port'")
        port_text = after[1:] if after else None
    else:
        host, colon, after = authority.partition(":")
        port_text = after if colon else None
        host = host.lower()
        try:
            ip = ipaddress.IPv4Address(host)
        except ValueError:
            if host.endswith("."):
                raise ValueError("its host ends in '.'; write the name without the trailing dot") from None
            if not _NAME.fullmatch(host):
                raise ValueError("its host is not a host name (letters, digits, '-' and '.'; IPv6 in [brackets]; "
                                 "internationalised names as 'xn--…')") from None  # fmt: skip
            if _numeric(host):
                raise ValueError("its host is a number but not a dotted IPv4 address; write the address as "
                                 "four decimal numbers, e.g. 192.0.2.10") from None  # fmt: skip
    if port_text is None:
        return host, ip, DEFAULT_PORTS[scheme]
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError("its port is not a number from 1 to 65535")
    return host, ip, int(port_text)


def _numeric(host: str) -> bool:
    """Would a resolver read this name as an IPv4 address (``127.1``, ``0x7f000001``, ``2130706433``)?"""
    try:
        socket.inet_aton(host)
    except OSError:
        return bool(re.fullmatch(r"[0-9]+|0x[0-9a-f]*", host.rsplit(".", 1)[-1]))
    return True


def _check_path(path: str) -> None:
    if not path.startswith("/"):  # pragma: no cover - the split above always leaves a '/'
        raise ValueError("its path does not start with '/'")
    for escape in _ESCAPE.finditer(path):
        code = escape.group(1)
        if code is None or not re.fullmatch(r"[0-9A-Fa-f]{2}", code):
            raise ValueError("its path has a '%' that is not followed by two hex digits")
        if code.upper() in ("2F", "5C", "25") or int(code, 16) < 0x20 or int(code, 16) >= 0x7F:
            raise ValueError("its path has an encoded '/', '\\', '%' or control character; write the path plainly")
    segments = path[1:].split("/")
    for i, segment in enumerate(segments):
        bare = urllib.parse.unquote(segment).split(";", 1)[0]
        if bare in (".", ".."):
            raise ValueError("its path has a '.' or '..' segment; write the path without it")
        if not segment and i < len(segments) - 1:
            raise ValueError("its path has an empty segment ('//')")


def parse_prefix(text: str) -> Target:
    """Parse an ``allowed_urls`` entry; ``ValueError`` says what is wrong and how to write it."""
    if "://" not in text:
        raise ValueError("write a whole URL with scheme, host and path, e.g. 'https://hooks.example.com/signoff/'")
    prefix = parse_url(text)
    if prefix.query or "?" in text:
        raise ValueError("a prefix has no query ('?…'); remove it")
    return prefix


def legacy_prefix(entry: str) -> Target:
    """What a deprecated ``allowed_hosts`` entry allows: https on the default port, any path."""
    entry = entry.strip().lower()
    wildcard = entry.startswith("*.")
    host = entry[2:] if wildcard else entry
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if any(c in host for c in "/@?#") or (":" in host and not _is_ipv6(host)):
        raise ValueError("an entry is a bare host: no scheme, no port, no path")
    authority = f"[{host}]" if ":" in host else host
    target = parse_url(f"https://{authority}/")
    if wildcard and target.ip is not None:
        raise ValueError("'*.' goes with a name, not an IP address")
    return Target("https", target.host, target.ip, 443, "/", wildcard=wildcard)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def under(target: Target, prefix: Target) -> bool:
    """Is ``target`` under ``prefix`` (same scheme, host, effective port; path on a segment boundary)?"""
    if target.scheme != prefix.scheme or target.port != prefix.port:
        return False
    if prefix.ip is not None or target.ip is not None:
        if target.ip != prefix.ip:
            return False
    elif prefix.wildcard:
        if not target.host.endswith("." + prefix.host):
            return False
    elif target.host != prefix.host:
        return False
    if prefix.path.endswith("/"):
        return target.path.startswith(prefix.path)
    return target.path == prefix.path


def allowed_target(url: str, prefixes: Iterable[Target]) -> Target:
    """The parsed ``url`` if it is under one of ``prefixes``; else ``ValueError`` (a short reason)."""
    target = parse_url(url)
    if not any(under(target, p) for p in prefixes):
        raise ValueError("it is not under any URL in [callbacks] allowed_urls (scheme, host, port and path must "
                         "match one); only the operator can add one")  # fmt: skip
    return target


# --- addresses ---------------------------------------------------------------------------


def address_problem(ip: IPAddress) -> str | None:
    """Why a callback may not connect to ``ip`` (None for a public unicast address)."""
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _EMBEDDING):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = address_problem(embedded)
            return None if inner is None else f"an IPv6 form of {embedded}, {inner}"
        if ip in _TEREDO:
            return "a Teredo tunnel address"
    if ip == ipaddress.IPv4Address("169.254.169.254") or ip == ipaddress.IPv6Address("fd00:ec2::254"):
        return "the cloud metadata address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED:
        return "a carrier-grade NAT address (100.64.0.0/10)"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address (fec0::/10)"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved:
        return "a reserved address"
    if not ip.is_global:
        return "not a public address"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's addresses for ``host`` (getaddrinfo, in a worker thread)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def checked_addresses(target: Target, resolver: Resolver) -> list[IPAddress]:
    """The addresses to connect to: the literal IP the operator named, or every address the
    name resolves to — once, all of them public; else ``ValueError``."""
    if target.ip is not None:
        return [target.ip]
    try:
        answers = await resolver(target.host, target.port)
    except OSError as exc:
        raise ValueError(f"{target.host} does not resolve ({exc})") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        try:
            ip = ipaddress.ip_address(answer)
        except ValueError:
            raise ValueError(f"{target.host} resolves to {answer!r}, which is not an IP address") from None
        problem = address_problem(ip)
        if problem is not None:
            raise ValueError(f"{target.host} resolves to {ip}, {problem}; not sent (to call it, name the IP "
                             "itself in [callbacks] allowed_urls)")  # fmt: skip
        addresses.append(ip)
    if not addresses:
        raise ValueError(f"{target.host} resolves to no address")
    return addresses


async def post_pinned(
    client: httpx.AsyncClient, target: Target, ip: IPAddress, content: bytes, headers: dict[str, str]
) -> httpx.Response:
    """POST to ``target`` over a connection to ``ip``: the name goes in ``Host`` and, for https,
    in TLS SNI, and the certificate is verified against the name, never against ``ip``. The
    connection is closed afterwards, so it never carries a request for another name."""
    extensions = {"sni_hostname": target.host} if target.scheme == "https" and target.ip is None else {}
    headers = {**headers, "Host": target.authority, "Connection": "close"}
    return await client.post(target.at(ip), content=content, headers=headers, extensions=extensions)
