#!/usr/bin/python3
"""healthcheck_established: does a process hold a live TCP connection to a remote port?

Typical use: nova-compute must stay connected to RabbitMQ (5672), or it silently stops working.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

ESTABLISHED = "01"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        # Docker reserves exit status 2 for healthchecks; report usage errors as unhealthy.
        print(f"unhealthy: {message} (see --help)")
        sys.exit(1)


def decode_address(hex_addr: str) -> str:
    """Decode '0100007F:1628' (kernel order: each 32-bit word little-endian) into 'ip:port'."""
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    ip = ipaddress.ip_address(b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4)))
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # dual-stack socket talking IPv4
        ip = ip.ipv4_mapped
    return f"[{ip}]:{int(port_hex, 16)}" if ip.version == 6 else f"{ip}:{int(port_hex, 16)}"


def established_to(port: int, proc_root: str) -> dict[str, str]:
    """Map socket inode -> remote 'ip:port' for ESTABLISHED TCP connections whose remote port is port."""
    found: dict[str, str] = {}
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc_root}/net/{name}") as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 10 and fields[3] == ESTABLISHED and int(fields[2].split(":")[1], 16) == port:
                found[fields[9]] = decode_address(fields[2])
    return found


def processes(pattern: str, proc_root: str) -> dict[int, str]:
    """Map pid -> command line for processes whose command line contains pattern."""
    matches = {}
    for entry in os.listdir(proc_root):
        if not entry.isdigit() or int(entry) == os.getpid():  # our own argv contains the pattern
            continue
        try:
            with open(f"{proc_root}/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # exited meanwhile, or not ours to read
            continue
        if pattern in cmdline:
            matches[int(entry)] = cmdline
    return matches


def become_owner(pid: int, proc_root: str) -> None:
    """Take the uid/gid of a process: containers lack CAP_SYS_PTRACE, so even root may not
    read another user's /proc/PID/fd, while the process's own user may."""
    with open(f"{proc_root}/{pid}/status") as status:
        ids = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("Uid:", "Gid:"))}
    os.setgroups([])
    os.setgid(ids["Gid"])
    os.setuid(ids["Uid"])


def socket_inodes(pid: int, proc_root: str) -> set[str]:
    inodes: set[str] = set()
    try:
        fds = os.listdir(f"{proc_root}/{pid}/fd")
    except PermissionError:
        if os.geteuid() != 0:
            return inodes
        try:
            become_owner(pid, proc_root)
            fds = os.listdir(f"{proc_root}/{pid}/fd")
        except OSError:
            return inodes
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"{proc_root}/{pid}/fd/{fd}")
        except PermissionError:
            if os.geteuid() != 0:
                continue
            become_owner(pid, proc_root)
            try:
                target = os.readlink(f"{proc_root}/{pid}/fd/{fd}")
            except OSError:
                continue
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def main(argv: list[str] | None = None) -> int:
    parser = Parser(
        prog="healthcheck_established",
        description="Healthy (exit 0) when a process whose command line contains PROCESS holds an "
        "ESTABLISHED TCP connection to remote port PORT; otherwise exit 1. Prints one line saying why.",
    )
    parser.add_argument("process", help="substring of the process command line, e.g. nova-compute")
    parser.add_argument("port", type=int, help="remote TCP port, e.g. 5672 for RabbitMQ")
    parser.add_argument(
        "--proc-root", default="/proc", help="where /proc is mounted (default /proc; for tests)"
    )
    args = parser.parse_args(argv)
    procs = processes(args.process, args.proc_root)
    if not procs:
        print(f"unhealthy: no process matching {args.process!r} is running")
        return 1
    conns = established_to(args.port, args.proc_root)
    for pid in sorted(procs):
        for inode in socket_inodes(pid, args.proc_root) & conns.keys():
            print(f"healthy: {args.process!r} (pid {pid}) is connected to {conns[inode]}")
            return 0
    pids = ", ".join(str(p) for p in sorted(procs))
    print(
        f"unhealthy: {args.process!r} (pid {pids}) has no ESTABLISHED connection to remote port {args.port}"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
