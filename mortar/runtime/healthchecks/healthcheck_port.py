#!/usr/bin/python3
"""healthcheck_port: is something listening on a TCP port? Reads /proc, so it needs no ss/netstat."""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Iterator

LISTEN = "0A"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # Docker reserves exit status 2 for healthchecks; report usage errors as unhealthy.
        print(f"unhealthy: {message} (see --help)")
        sys.exit(1)


def decode_address(hex_addr: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """Decode '0100007F:1F90' (kernel order: each 32-bit word little-endian) into (address, port)."""
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # dual-stack socket bound to IPv4
        ip = ip.ipv4_mapped
    return ip, int(port_hex, 16)


def tcp_sockets(proc_root: str) -> Iterator[tuple[str, str, str]]:
    """Yield (local, remote, state) hex fields from /proc/net/tcp and tcp6."""
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc_root}/net/{name}") as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 4:
                yield fields[1], fields[2], fields[3]


def host_matches(local: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> bool:
    want = ipaddress.ip_address(host)
    if isinstance(want, ipaddress.IPv6Address) and want.ipv4_mapped:
        want = want.ipv4_mapped
    return local.is_unspecified or local == want


def find_listener(port: int, host: str | None, proc_root: str) -> str | None:
    for local_hex, _remote, state in tcp_sockets(proc_root):
        if state != LISTEN:
            continue
        addr, lport = decode_address(local_hex)
        if lport == port and (host is None or host_matches(addr, host)):
            return f"[{addr}]:{lport}" if addr.version == 6 else f"{addr}:{lport}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="healthcheck_port",
        description="Healthy (exit 0) when some socket LISTENs on the TCP port, per /proc/net/tcp "
        "and /proc/net/tcp6; otherwise exit 1. Prints one line saying why.",
    )
    parser.add_argument("port", type=int, help="TCP port number")
    parser.add_argument(
        "--host", help="local address the listener must be bound to (a wildcard bind also counts)"
    )
    parser.add_argument(
        "--proc-root", default="/proc", help="where /proc is mounted (default /proc; for tests)"
    )
    args = parser.parse_args(argv)
    if args.host is not None:
        try:
            ipaddress.ip_address(args.host)
        except ValueError:
            parser.error(f"--host {args.host!r} is not an IP address")
    found = find_listener(args.port, args.host, args.proc_root)
    where = f" on {args.host}" if args.host else ""
    if found:
        print(f"healthy: listening on {found}")
        return 0
    print(f"unhealthy: nothing listening on TCP port {args.port}{where}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
