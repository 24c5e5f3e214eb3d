"""The HTTP client of ``sscp-rag fetch``: bounded, deadline-limited and host-checked.

Everything fetch reads from the web goes through :class:`Http`:

- **hosts**: links and redirects are followed only to allowed host names (the start pages' own and
  the ones named with ``--allow-host``); another host is refused before any request is sent;
- **addresses**: every connection is checked after DNS resolution, at connect time (so a name that
  re-resolves to another address cannot slip through): loopback, private, link-local and other
  non-public addresses are refused unless a start page itself is on that address
  (:class:`AddressPolicy`, enforced by the client :func:`make_client` builds);
- **deadline**: one request (connecting, headers, the whole body) must be over within a total
  number of seconds however slowly the server sends, not just between two reads;
- **size**: only ``identity`` and ``gzip`` are accepted (``Accept-Encoding: identity, gzip``), gzip
  is decoded in bounded steps, and every cap counts decoded bytes, for PDFs, pages and robots.txt;
- **politeness**: robots.txt per host (RFC 9309), a per-host delay, retries with exponential backoff
  for connection errors, timeouts, 429 and 5xx, and redirects followed by hand (at most 5 hops, each
  checked for its host and against robots.txt).

Failure reasons never quote a response body.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpcore
import httpx

ROBOTS_AGENT = "sscp-rag"
ACCEPT_ENCODING = "identity, gzip"
MAX_HOPS = 5
ROBOTS_CAP = 512 * 1024  # decoded bytes of robots.txt read at most
_DECODE_STEP = 64 * 1024  # most decoded bytes produced from compressed input in one step
_GZIP_MAGIC = b"\x1f\x8b"
_REDIRECTS = {301, 302, 303, 307, 308}
_RETRY_STATUSES = {429, 500, 502, 503, 504}


class Unreachable(Exception):
    """The host could not be reached (after retries)."""


class Disallowed(Exception):
    """robots.txt forbids the URL."""


class Refused(Exception):
    """A request or response that is not usable, with a one-line reason."""


class AddressRefused(Refused):
    """Refused because the host resolves to an address fetch may not connect to."""


class BlockedAddress(Exception):
    """A connection to an address the :class:`AddressPolicy` forbids (raised before connecting)."""


class DeadlineExceeded(Exception):
    """The current request ran past its total deadline."""


# The deadline (time.monotonic()) of the request being sent or read in this thread, if any. Set by
# Http for each request; read by the guarded connections, so every socket read is bounded by it.
_DEADLINE: ContextVar[float | None] = ContextVar("sscp_rag_http_deadline", default=None)


class HttpOptions(Protocol):
    """What :class:`Http` needs to know (``sscp_rag.fetch.FetchOptions`` is one)."""

    user_agent: str
    delay: float
    timeout: float
    deadline: float
    retries: int
    backoff: float


# --------------------------------------------------------------------------------------------
# hosts and addresses


def hostname(url: str) -> str:
    """The URL's host name, lower case, without port or trailing dot ('' when it has none)."""
    try:
        return (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return ""


def normalise_host(value: str) -> str:
    """A host name as ``--allow-host`` takes it: ``cdn.example.org``, ``CDN.example.org:8443`` or a
    URL all give ``cdn.example.org``. Raises ValueError for something that is not a host."""
    text = value.strip()
    host = hostname(text if "://" in text else "//" + text)
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ValueError(f"not a host name: {value!r}")
    return host


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _non_public_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes the address non-public ('loopback', 'private', ...), or None for a public one."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (DNS, hosts file), in the system's order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses fetch may connect to: public ones, plus the non-public addresses the start
    pages themselves are on (``permitted``), so a crawl of an intranet or of 127.0.0.1 still works
    while a public site's links cannot reach loopback, the LAN or a cloud metadata address."""

    permitted: frozenset[str] = frozenset()
    resolve: Callable[[str, int], list[str]] = resolve

    @classmethod
    def for_start_pages(cls, urls: Iterable[str], resolve: Callable[[str, int], list[str]] = resolve) -> AddressPolicy:
        """Resolve each start page's host once, now; its non-public addresses are permitted."""
        permitted: set[str] = set()
        for url in urls:
            parts = urlsplit(url)
            host = hostname(url)
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                addresses = resolve(host, port)
            except (OSError, UnicodeError, ValueError):
                continue  # unresolvable: its request will say so
            for address in addresses:
                with contextlib.suppress(ValueError):
                    ip = _ip(address)
                    if _non_public_kind(ip):
                        permitted.add(str(ip))
        return cls(frozenset(permitted), resolve)

    def problem(self, address: str) -> str | None:
        """Why a connection to ``address`` is refused (e.g. 'a loopback address 127.0.0.1'), or None."""
        try:
            ip = _ip(address)
        except ValueError:
            return f"an unusable address {address!r}"
        if str(ip) in self.permitted:
            return None
        kind = _non_public_kind(ip)
        return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind} address {ip}" if kind else None


def check_address(policy: AddressPolicy, host: str, port: int) -> list[str]:
    """The addresses of ``host`` that ``policy`` lets fetch connect to, in order. Raises
    BlockedAddress when it resolves only to forbidden ones, OSError when it does not resolve."""
    addresses = policy.resolve(host, port)
    allowed = [a for a in addresses if policy.problem(a) is None]
    if addresses and not allowed:
        raise BlockedAddress(
            f"{host} resolves to {policy.problem(addresses[0])}; refused "
            "(only a start page's own address may be loopback, private or link-local)"
        )
    return allowed


# --------------------------------------------------------------------------------------------
# the guarded connection: address check at connect time, every read bounded by the deadline


def _bounded(timeout: float | None) -> float | None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise DeadlineExceeded()
    return remaining if timeout is None else min(timeout, remaining)


def _past_deadline() -> bool:
    deadline = _DEADLINE.get()
    return deadline is not None and time.monotonic() >= deadline - 0.01


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def _io(self, op: Callable[[float | None], bytes | None], timeout: float | None) -> bytes | None:
        try:
            return op(_bounded(timeout))
        except (httpcore.ReadTimeout, httpcore.WriteTimeout) as exc:
            if _past_deadline():
                raise DeadlineExceeded() from exc
            raise

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._io(lambda t: self._inner.read(max_bytes, t), timeout) or b""

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._io(lambda t: self._inner.write(buffer, t), timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _bounded(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host itself, refuses forbidden addresses and connects to an allowed one."""

    def __init__(self, policy: AddressPolicy):
        super().__init__()
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = check_address(self.policy, host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                stream = super().connect_tcp(address, port, _bounded(timeout), local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
                continue
            return _DeadlineStream(stream)
        raise error


def make_client(policy: AddressPolicy, timeout: float) -> httpx.Client:
    """An httpx client whose every connection goes through the address check and the deadline.

    It connects directly: proxy environment variables are not used, since the address check must
    see the address it connects to.
    """
    return httpx.Client(transport=_GuardedTransport(policy), timeout=httpx.Timeout(timeout), follow_redirects=False)


class _GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, whose connection pool connects through :class:`_GuardedBackend`.

    httpx takes no network backend as an option, so this subclass builds the pool its parent
    uses (httpx is pinned; tests/test_fetch.py checks the guard on real local servers)."""

    def __init__(self, policy: AddressPolicy):
        super().__init__()
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_GuardedBackend(policy)
        )


# --------------------------------------------------------------------------------------------
# reasons


def mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KB"


def status_reason(resp: httpx.Response) -> str:
    """``HTTP 404 Not Found``: the standard phrase, never the server's own text."""
    return f"HTTP {resp.status_code} {httpx.codes.get_reason_phrase(resp.status_code)}".strip()


def content_type(resp: httpx.Response) -> str:
    """The media type, lower case, reduced to characters a media type has (at most 60)."""
    raw = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return "".join(c for c in raw if c.isalnum() or c in "/.+-_")[:60]


def _transport_reason(url: str, exc: httpx.TransportError) -> str:
    host = urlsplit(url).netloc
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)):
        return f"cannot reach {host}: {_exc_reason(exc)} (no network?)"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {host}: {_exc_reason(exc)}"
    return f"connection to {host} failed: {_exc_reason(exc)}"


def _exc_reason(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return str(exc).strip() or type(exc).__name__


# --------------------------------------------------------------------------------------------
# bodies


def _gunzip(raw: Iterable[bytes]) -> Iterator[bytes]:
    """gzip-decoded blocks of at most _DECODE_STEP bytes each, however compressed the input:
    a gzip bomb is stopped by the caller's cap before it takes memory. Members are decoded in turn;
    bytes after the last one that do not start another are ignored, as browsers do. Raises
    zlib.error for corrupt or incomplete data."""
    d = zlib.decompressobj(wbits=31)
    carry, trailing = b"", False
    for chunk in raw:
        data, carry = carry + chunk, b""
        while data and not trailing:
            if d.eof:  # a member has ended: another follows, or the rest is trailing bytes
                if len(data) < 2 and _GZIP_MAGIC.startswith(data):
                    carry = data  # perhaps the start of another member's header
                    break
                if not data.startswith(_GZIP_MAGIC):
                    trailing = True
                    break
                d = zlib.decompressobj(wbits=31)
            out = d.decompress(data, _DECODE_STEP)
            if out:
                yield out
            data = d.unused_data if d.eof else d.unconsumed_tail
    while not d.eof and (out := d.decompress(b"", _DECODE_STEP)):
        yield out
    if not d.eof:
        raise zlib.error("incomplete gzip data")


# --------------------------------------------------------------------------------------------
# the client


class Http:
    """GET with host checks, robots.txt, a per-host rate limit, retries with backoff, manual
    redirects, a total deadline per request and bounded, decoded bodies."""

    def __init__(
        self,
        client: httpx.Client,
        options: HttpOptions,
        allowed_hosts: Iterable[str],
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.options = options
        self.allowed_hosts = frozenset(allowed_hosts)
        self.sleep = sleep
        self.robots: dict[str, RobotFileParser] = {}
        self.last: dict[str, float] = {}
        self.headers = {"User-Agent": options.user_agent, "Accept-Encoding": ACCEPT_ENCODING}
        self.timeout = httpx.Timeout(options.timeout)

    @property
    def deadline_reason(self) -> str:
        return f"took longer than {self.options.deadline:g} s, the limit for one request; stopped"

    # -- politeness --------------------------------------------------------------------------

    def _wait(self, url: str) -> None:
        host = urlsplit(url).netloc
        delay = self.options.delay
        rp = self.robots.get(host)
        if rp is not None:
            crawl_delay = rp.crawl_delay(ROBOTS_AGENT)
            if crawl_delay:
                delay = max(delay, min(float(crawl_delay), 60.0))
        last = self.last.get(host)
        if last is not None:
            remaining = delay - (time.monotonic() - last)
            if remaining > 0:
                self.sleep(remaining)
        self.last[host] = time.monotonic()

    def allowed(self, url: str) -> bool:
        """Whether robots.txt of the URL's host lets this tool fetch it (read once per host)."""
        host = urlsplit(url).netloc
        if host not in self.robots:
            parts = urlsplit(url)
            robots_url = f"{parts.scheme}://{parts.netloc}/robots.txt"
            rp = RobotFileParser(robots_url)
            try:
                with self.get(robots_url, robots=False) as resp:
                    if resp.status_code == 200:
                        body = b"".join(self.blocks(resp, ROBOTS_CAP, "robots.txt"))
                        rp.parse(body.decode("utf-8", "replace").splitlines())
                    elif resp.status_code in (401, 403) or resp.status_code >= 500:
                        rp.disallow_all = True
                    else:  # 404 and other 4xx: no rules
                        rp.allow_all = True
            except AddressRefused:
                raise
            except Refused as exc:
                reason = str(exc)
                raise Refused(reason if reason.startswith("robots.txt") else f"robots.txt: {reason}") from None
            self.robots[host] = rp
        return self.robots[host].can_fetch(ROBOTS_AGENT, url)

    def check_host(self, url: str, redirected: bool = False) -> None:
        """Refused unless the URL's host is a start page's host or one allowed by the user."""
        host = hostname(url)
        if host not in self.allowed_hosts:
            what = f"redirect to {host}" if redirected else f"link to {host}"
            raise Refused(f"{what}, which is not an allowed host; refused (--allow-host {host} allows it)")

    # -- requests ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _send(self, url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
        """One GET (streamed, redirects not followed) with retries, each attempt within the deadline."""
        attempts = self.options.retries + 1
        for attempt in range(attempts):
            self._wait(url)
            last_try = attempt == attempts - 1
            token = _DEADLINE.set(time.monotonic() + self.options.deadline)
            try:
                try:
                    req = self.client.build_request(
                        "GET", url, headers={**self.headers, **headers}, timeout=self.timeout
                    )
                    resp = self.client.send(req, stream=True, follow_redirects=False)
                except httpx.InvalidURL as exc:
                    raise Refused(f"invalid URL ({exc})") from exc
                except BlockedAddress as exc:
                    raise AddressRefused(str(exc)) from None
                except DeadlineExceeded:
                    raise Refused(self.deadline_reason) from None
                except httpx.TransportError as exc:  # connect errors, timeouts, protocol errors
                    if last_try:
                        raise Unreachable(_transport_reason(url, exc)) from exc
                    self.sleep(self.options.backoff * 2**attempt)
                    continue
                if resp.status_code in _RETRY_STATUSES and not last_try:
                    wait = self.options.backoff * 2**attempt
                    retry_after = resp.headers.get("Retry-After", "")
                    if retry_after.isdigit():
                        wait = max(wait, min(float(retry_after), 60.0))
                    resp.close()
                    self.sleep(wait)
                    continue
                try:
                    yield resp
                finally:
                    resp.close()
                return
            finally:
                _DEADLINE.reset(token)

    @contextlib.contextmanager
    def get(self, url: str, headers: dict[str, str] | None = None, *, robots: bool = True) -> Iterator[httpx.Response]:
        """GET following at most 5 redirects, checking the host (and robots.txt) before every hop."""
        for hop in range(MAX_HOPS + 1):
            if urlsplit(url).scheme not in ("http", "https"):
                raise Refused(f"redirect to a non-http(s) URL {url[:100]!r}; refused")
            self.check_host(url, redirected=hop > 0)
            if robots and not self.allowed(url):
                raise Disallowed(url)
            with self._send(url, headers or {}) as resp:
                location = resp.headers.get("Location")
                if resp.status_code in _REDIRECTS and location:
                    url = urldefrag(urljoin(url, location)).url
                    continue
                yield resp
                return
        raise Refused(f"more than {MAX_HOPS} redirects")

    def blocks(self, resp: httpx.Response, cap: int, label: str = "") -> Iterator[bytes]:
        """The decoded body in blocks. Refused when it is (or is declared) larger than ``cap``
        decoded bytes, runs past the request's deadline, uses an encoding other than gzip, is
        corrupt, or the connection drops. ``label`` names the body in reasons ("the page")."""
        subject = f"{label} is " if label else ""
        encodings = [e.strip().lower() for e in resp.headers.get("Content-Encoding", "").split(",") if e.strip()]
        encodings = [e for e in encodings if e != "identity"]
        if encodings not in ([], ["gzip"], ["x-gzip"]):
            raise Refused(f"{subject}sent with Content-Encoding {', '.join(encodings)[:40]}, which was not asked for")
        declared = resp.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > cap:
            raise Refused(f"{subject}too large ({mb(int(declared))} > cap {mb(cap)})")
        decoded = _gunzip(self._raw(resp)) if encodings else self._raw(resp)
        size = 0
        try:
            for block in decoded:
                size += len(block)
                if size > cap:
                    how = " once decompressed" if encodings else ""
                    raise Refused(f"{subject}larger than the cap of {mb(cap)}{how}; download stopped")
                yield block
        except zlib.error:
            raise Refused(f"{subject}not valid gzip data") from None
        finally:
            decoded.close()

    def _raw(self, resp: httpx.Response) -> Iterator[bytes]:
        """The body as it came off the wire, checked against the deadline after every read."""
        try:
            for chunk in resp.iter_raw():
                if _past_deadline():
                    raise Refused(self.deadline_reason)
                yield chunk
        except DeadlineExceeded:
            raise Refused(self.deadline_reason) from None
        except httpx.TransportError as exc:
            raise Refused(f"connection lost while reading the body: {_exc_reason(exc)}") from exc

    def head(self, resp: httpx.Response, n: int) -> bytes:
        """The first ``n`` decoded bytes of the body (fewer if it is shorter); the rest is not read."""
        buf = b""
        with contextlib.closing(self.blocks(resp, 1 << 62)) as blocks:
            for block in blocks:
                buf += block[: n - len(buf)]
                if len(buf) >= n:
                    break
        return buf

    def page(self, url: str, cap: int) -> tuple[str, bytes]:
        """(final URL, body) of an HTML page; Refused with a reason otherwise."""
        with self.get(url) as resp:
            if resp.status_code != 200:
                raise Refused(status_reason(resp))
            ctype = content_type(resp)
            if ctype and ctype not in HTML_TYPES:
                raise Refused(f"not an HTML page (Content-Type {ctype})")
            return str(resp.url), b"".join(self.blocks(resp, cap, "the page"))


HTML_TYPES = ("text/html", "application/xhtml+xml")
