"""Per-start local CA and server certificate, because the Batch API is HTTPS only (§1.1)."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

import trustme


def _identities(host: str) -> list[str]:
    names = ["127.0.0.1", "localhost", "::1"]
    if host not in names and host not in {"0.0.0.0", "::", ""}:
        names.append(host)
    return names


def make_server_context(host: str, ca_path: Path) -> ssl.SSLContext:
    """Create a fresh CA, write it to `ca_path` (PEM) and return a server TLS context."""
    ca = trustme.CA(organization_name="cdpsandbox local CA")
    cert = ca.issue_cert(*_identities(host), common_name="cdpsandbox")
    ca_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = ca_path.with_suffix(".pem.tmp")
    ca.cert_pem.write_to_path(str(tmp))
    tmp.replace(ca_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert.configure_cert(context)
    return context


def is_loopback(address: str) -> bool:
    """True for 127.0.0.0/8 and ::1 (also IPv4-mapped), the only peers allowed on /_sandbox/."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback
