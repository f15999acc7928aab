"""Which IP addresses the fetcher may contact, written as explicit networks.

`ipaddress`'s `is_private` / `is_global` flags have gaps (IPv4 inside IPv6 wrappers, CGNAT, 6to4,
Teredo, NAT64), so the policy lists its networks itself and applies them in this order:

1. an address embedding IPv4 (mapped, compatible, SIIT, NAT64, 6to4, Teredo) is judged by every
   IPv4 address it embeds;
2. never allowed: unspecified/"this network", link-local (cloud metadata), multicast, broadcast,
   reserved, documentation, benchmarking, discard and protocol-assignment ranges;
3. loopback: allowed only with `allow_loopback` (by default the same as `allow_private`);
4. private (RFC 1918, CGNAT 100.64/10, unique-local fc00::/7, local-use NAT64): only with `allow_private`;
5. anything else is allowed when it is global unicast (all remaining IPv4, IPv6 2000::/3), else refused.
"""

from __future__ import annotations

import ipaddress

IP = ipaddress.IPv4Address | ipaddress.IPv6Address


def _nets(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


NEVER = {
    "unspecified": _nets("0.0.0.0/8", "::/128"),
    "link-local": _nets("169.254.0.0/16", "fe80::/10"),
    "multicast": _nets("224.0.0.0/4", "ff00::/8"),
    "broadcast or reserved": _nets(
        "240.0.0.0/4", "192.0.0.0/24", "192.88.99.0/24", "100::/64", "2001::/23", "fec0::/10"
    ),
    "documentation": _nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20"),
    "benchmarking": _nets("198.18.0.0/15", "2001:2::/48"),
}
LOOPBACK = _nets("127.0.0.0/8", "::1/128")
PRIVATE = _nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "64:ff9b:1::/48")
GLOBAL_V6 = ipaddress.ip_network("2000::/3")

_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPAT = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries (and would route to), or [] when it carries none."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if any(ip in net for net in (_MAPPED, _SIIT, _NAT64)):
        return [low32]
    if ip in _COMPAT and int(ip) > 1:  # ::a.b.c.d (deprecated); :: and ::1 are themselves
        return [low32]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)  # (server, client): a packet goes to both
    return []


def _refusal(ip: IP, allow_private: bool, allow_loopback: bool) -> str | None:
    for kind, nets in NEVER.items():
        if any(ip in net for net in nets if net.version == ip.version):
            return f"{kind} address"
    if any(ip in net for net in LOOPBACK if net.version == ip.version):
        return None if allow_loopback else "loopback address (set KEYE_ALLOW_PRIVATE_ADDRESSES=true to allow)"
    if any(ip in net for net in PRIVATE if net.version == ip.version):
        return None if allow_private else "private address (set KEYE_ALLOW_PRIVATE_ADDRESSES=true to allow)"
    if ip.version == 6 and ip not in GLOBAL_V6:
        return "not a global unicast address"
    return None


def check_address(ip: IP, allow_private: bool, allow_loopback: bool | None = None) -> str | None:
    """Why this address is refused, or None when it may be contacted."""
    loopback_ok = allow_private if allow_loopback is None else allow_loopback
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        inner = embedded_ipv4(ip)
        for v4 in inner:
            reason = _refusal(v4, allow_private, loopback_ok)
            if reason is not None:
                return f"{ip} embeds {v4}: {reason}"
        if inner:
            return None
    reason = _refusal(ip, allow_private, loopback_ok)
    return None if reason is None else f"{ip}: {reason}"


__all__ = ["check_address", "embedded_ipv4", "NEVER", "LOOPBACK", "PRIVATE"]
