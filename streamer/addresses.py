"""Addresses in the config, checked by their syntax alone: nothing is resolved or contacted.

Host names follow DNS label rules, loosened for underscores (container and compose service
names use them); an all-digit last label is a broken IPv4 address (999.1.1.1), not a name.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


def is_host(text: str) -> bool:
    """An IP address (v4 or v6, no brackets) or a host name."""
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    return (
        len(text) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_broker_list(servers: str) -> bool:
    """bootstrap.servers as librdkafka reads it: [PROTOCOL://]host[:port], comma-separated."""
    return all(_is_broker(entry.strip()) for entry in servers.split(","))


_BROKER = re.compile(
    r"(?:[A-Za-z_][A-Za-z0-9_]*://)?"  # an optional listener name, e.g. SSL://
    r"(?:\[(?P<ipv6>[^]]+)\]|(?P<host>[^:/]+))"
    r"(?::(?P<port>\d{1,5}))?"
)


def _is_broker(entry: str) -> bool:
    """One entry; an IPv6 address goes in brackets, as librdkafka expects."""
    match = _BROKER.fullmatch(entry)
    if match is None:
        return False
    port = match["port"]
    if port is not None and not 1 <= int(port) <= 65535:
        return False
    if match["ipv6"] is not None:
        return _is_ipv6(match["ipv6"])
    return is_host(match["host"])


def _is_ipv6(text: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv6Address)
    except ValueError:
        return False


def base_url_problem(url: str) -> str | None:
    """Why `url` cannot be the API's base URL, or None. Never quotes it: it may hold a secret."""
    example = "e.g. https://api-01.moengage.com"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return f"not a valid URL ({example}); check the host and port"
    if parts.scheme not in ("http", "https"):
        return f"must start with https:// or http:// ({example})"
    if parts.username is not None or parts.password is not None:
        return (
            "must not carry user:password@; credentials come from MOENGAGE_WORKSPACE_ID and "
            "MOENGAGE_API_KEY"
        )
    if not parts.hostname or not is_host(parts.hostname) or port == 0:
        return f"needs a host name or IP address and a port 1-65535 if any ({example})"
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return "must not have a ?query or #fragment: the API path is appended to it"
    if any(char.isspace() for char in url):
        return f"must not contain spaces ({example})"
    return None
