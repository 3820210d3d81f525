"""``host:port`` and ``http://host:port`` for any address, from one place: an IPv6 address goes in
brackets (``[fe80::1]:8000``), as URLs and every ``host:port`` reader require; names and IPv4
addresses are written as they are. Pure: no I/O."""

from __future__ import annotations

import ipaddress


def is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host.split("%", 1)[0]), ipaddress.IPv6Address)
    except ValueError:
        return False


def host_port(host: str, port: int) -> str:
    """``host:port``, the host in brackets when it is an IPv6 address (a zone id kept)."""
    return f"[{host}]:{port}" if is_ipv6(host) and not host.startswith("[") else f"{host}:{port}"


def http_url(host: str, port: int) -> str:
    """The base URL of a service at ``host`` and ``port`` (a zone id written as URLs want it, %25)."""
    return f"http://{host_port(host.replace('%', '%25'), port)}"
