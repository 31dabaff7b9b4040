"""Which network addresses a download may go to: the public internet only.

`address_refusal(ip)` is why a request must not connect to `ip` ("a loopback address", "a private
address", `METADATA_REFUSAL` for a cloud metadata service...), or None for a public address. IPv4
inside IPv6 (mapped, 6to4, Teredo, NAT64) is judged as the IPv4 address it carries. The cloud
metadata services are listed by address (`METADATA_NETWORKS`) and by name (`METADATA_HOSTNAMES`):
no allowed network ever opens them. Pure: no I/O, no name resolution (fetch.py resolves and pins).
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Metadata services of the big clouds; most are also link-local or private, named here for a clear message
# and because some (Azure's wireserver, 168.63.129.16) are not.
METADATA_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2/32",  # AWS ECS task metadata
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "100.100.100.200/32",  # Alibaba Cloud
        "168.63.129.16/32",  # Azure wireserver
        "192.0.0.192/32",  # Oracle Cloud (legacy)
    )
)
METADATA_HOSTNAMES = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
METADATA_REFUSAL = "a cloud metadata address"


def address_refusal(ip: IPAddress) -> str | None:
    """Why a request must not go to `ip` ("a loopback address", ...), or None when it is public."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    if any(ip in net for net in METADATA_NETWORKS):
        return METADATA_REFUSAL
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_reserved:
        return "a reserved address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global:
        return "a reserved (non-public) address"
    return None
