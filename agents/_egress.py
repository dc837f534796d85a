"""Opt-in egress accounting and allow-list enforcement at the Python socket layer.

What is intercepted (once :func:`install` has run, for code running inside a
governed invocation):

* bytes written through ``socket.socket.send/sendall/sendto/sendmsg`` and
  ``ssl.SSLSocket.send/sendall`` (TLS: the plaintext size) — this covers
  ``urllib``, ``http.client``, ``requests``/``urllib3``, ``httpx``, ``aiohttp`` and
  ``boto3``, and ``asyncio`` transports;
* ``socket.getaddrinfo`` (host names) and ``socket.socket.connect/connect_ex``
  (addresses) when a verdict imposes an allow-list.

What is not: sockets opened by C extensions that bypass Python's ``socket`` module
(librdkafka, gRPC core, database drivers written in C), child processes, DNS
queries themselves. Traffic to internal networks (``GOVERNOR_EGRESS_INTERNAL``:
loopback, private and link-local ranges by default) is not counted as egress, and
loopback is never blocked.
Counting attributes bytes to the invocation whose context performs the write:
threads started by the handler without copying its context are not attributed.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from agents._context import current
from agents._errors import EgressBlocked

INTERNAL_DEFAULT = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                    "169.254.0.0/16", "fc00::/7", "fe80::/10")
_installed = False
_lock = threading.Lock()
_internal: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = [
    ipaddress.ip_network(n) for n in INTERNAL_DEFAULT]
_original_getaddrinfo = socket.getaddrinfo


class EgressPolicy:
    """An allow-list: host names (``api.example.com``, ``*.example.com``), IP
    addresses and CIDR ranges. Loopback is always allowed."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.entries = tuple(entries)
        self._hosts: set[str] = set()
        self._suffixes: list[str] = []
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._resolved: set[str] = set()
        for entry in self.entries:
            entry = entry.strip().lower()
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                if entry.startswith("*."):
                    self._suffixes.append(entry[1:])
                elif entry:
                    self._hosts.add(entry)

    def allows_host(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return (host in self._hosts or any(host.endswith(s) for s in self._suffixes)
                or self.allows_address(host))

    def allows_address(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        return (ip.is_loopback or address in self._resolved
                or any(ip in net for net in self._networks))

    def remember(self, addresses: Iterable[str]) -> None:
        """Addresses an allowed host name resolved to are allowed too."""
        self._resolved.update(addresses)


def set_internal(networks: Iterable[str]) -> None:
    """Destinations (CIDRs) whose traffic is not egress; replaces the default."""
    _internal[:] = [ipaddress.ip_network(n.strip(), strict=False) for n in networks if n.strip()]


def install() -> None:
    """Patch the socket layer once per process (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        import ssl  # only when egress is governed: ~5 ms of import time otherwise
        for name in ("send", "sendall", "sendto", "sendmsg"):
            setattr(socket.socket, name,
                    _counting(getattr(socket.socket, name), name == "sendall", tls=False))
        for name in ("send", "sendall"):  # TLS writes bypass socket.socket's methods
            setattr(ssl.SSLSocket, name,
                    _counting(getattr(ssl.SSLSocket, name), name == "sendall", tls=True))
        for name in ("connect", "connect_ex"):
            setattr(socket.socket, name, _guarded_connect(getattr(socket.socket, name)))
        socket.getaddrinfo = _guarded_getaddrinfo
        _installed = True


def _size(data: Any) -> int:
    return memoryview(data).nbytes if not isinstance(data, list | tuple) else sum(
        memoryview(part).nbytes for part in data)


def _is_internal(sock: socket.socket, address: Any = None) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True  # unix sockets and the like never leave the machine
    try:
        peer = address[0] if isinstance(address, tuple) else sock.getpeername()[0]
        ip = ipaddress.ip_address(peer)
    except (OSError, ValueError, IndexError, TypeError):
        return False
    return any(ip in net for net in _internal)


def _counting(send: Callable[..., Any], returns_none: bool, tls: bool) -> Callable[..., Any]:
    def wrapper(self: socket.socket, data: Any, *args: Any, **kwargs: Any) -> Any:
        result = send(self, data, *args, **kwargs)
        invocation = current.get()
        if invocation is not None and invocation.count_egress and (
                not tls or getattr(self, "_sslobj", None) is not None):  # else counted below
            address = args[-1] if args and isinstance(args[-1], tuple) else None  # sendto
            if not _is_internal(self, address):
                invocation.egress_bytes += _size(data) if returns_none else int(result or 0)
        return result

    wrapper.__wrapped__ = send  # type: ignore[attr-defined]
    return wrapper


def _check_address(address: Any) -> None:
    invocation = current.get()
    policy = invocation.allow if invocation is not None else None
    if not isinstance(policy, EgressPolicy) or not isinstance(address, tuple):
        return
    host = str(address[0])
    if not policy.allows_address(host) and not policy.allows_host(host):
        assert invocation is not None
        raise EgressBlocked(invocation.function, host, policy.entries)


def _guarded_connect(connect: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: socket.socket, address: Any) -> Any:
        _check_address(address)
        return connect(self, address)

    wrapper.__wrapped__ = connect  # type: ignore[attr-defined]
    return wrapper


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    invocation = current.get()
    if invocation is None or not isinstance(host, str | bytes):
        return _original_getaddrinfo(host, *args, **kwargs)
    name = host.decode() if isinstance(host, bytes) else host
    policy = invocation.allow
    if isinstance(policy, EgressPolicy) and not policy.allows_host(name):
        raise EgressBlocked(invocation.function, name, policy.entries)
    result = _original_getaddrinfo(host, *args, **kwargs)
    addresses = [str(info[4][0]) for info in result]
    if isinstance(policy, EgressPolicy):
        policy.remember(addresses)
    if invocation.count_egress and not all(_internal_address(a) for a in addresses):
        if invocation.hosts is None:
            invocation.hosts = set()
        invocation.hosts.add(name.lower().rstrip("."))
    return result


def _internal_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%")[0])
    except ValueError:
        return False
    return any(ip in net for net in _internal)
