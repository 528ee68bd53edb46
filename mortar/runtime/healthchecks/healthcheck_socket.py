#!/usr/bin/python3
"""Socket healthchecks for mortar images, read from /proc (no ss or netstat needed).

Installed twice, and the name it is run by picks the check:

  healthcheck_port PORT [--host ADDR] [--owner PROCESS] [--send TEXT] [--expect REGEX]
                        [--http PATH [--status CODES]] [--tls-ca FILE]
      Something LISTENs on the TCP port; with --owner, a process of *this container*
      whose command line contains PROCESS holds that socket (containers share the host's
      network, so a listener alone may be anyone's); with --send/--expect/--http, the
      service answers its own protocol; with --tls-ca, over TLS, its certificate signed by
      the CA of FILE and naming ADDR.
  healthcheck_established PROCESS PORT
      A process of this container holds an ESTABLISHED TCP connection to remote PORT
      (nova-compute must stay connected to its message queue, or it silently stops).

Exit 0 when healthy, 1 when not, with one line on stdout saying why.
"""

from __future__ import annotations

import argparse
import codecs
import ipaddress
import os
import re
import socket
import ssl
import sys

LISTEN = "0A"
ESTABLISHED = "01"


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
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:  # dual-stack socket on IPv4
        ip = ip.ipv4_mapped
    return ip, int(port_hex, 16)


def show(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> str:
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


def tcp_sockets(proc_root: str) -> list[tuple[str, str, str, str]]:
    """(local, remote, state, inode) hex fields of /proc/net/tcp and tcp6."""
    found = []
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc_root}/net/{name}") as f:
                lines = f.readlines()[1:]
        except FileNotFoundError:  # no IPv6 in this kernel or namespace
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 10:
                found.append((fields[1], fields[2], fields[3], fields[9]))
    return found


def host_matches(local: ipaddress.IPv4Address | ipaddress.IPv6Address, host: str) -> bool:
    want = ipaddress.ip_address(host)
    if isinstance(want, ipaddress.IPv6Address) and want.ipv4_mapped:
        want = want.ipv4_mapped
    return local.is_unspecified or local == want


def listeners(port: int, host: str | None, proc_root: str) -> dict[str, str]:
    """Socket inode -> 'address:port' of the LISTEN sockets on PORT (and HOST)."""
    found = {}
    for local, _remote, state, inode in tcp_sockets(proc_root):
        if state != LISTEN:
            continue
        address, local_port = decode_address(local)
        if local_port == port and (host is None or host_matches(address, host)):
            found[inode] = show(address, local_port)
    return found


def established_to(port: int, proc_root: str) -> dict[str, str]:
    """Socket inode -> remote 'address:port' of ESTABLISHED connections to remote PORT."""
    found = {}
    for _local, remote, state, inode in tcp_sockets(proc_root):
        if state == ESTABLISHED:
            address, remote_port = decode_address(remote)
            if remote_port == port:
                found[inode] = show(address, remote_port)
    return found


def processes(pattern: str, proc_root: str) -> dict[int, str]:
    """pid -> command line of this container's processes whose command line contains PATTERN."""
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


def _read_inodes(pid: int, proc_root: str) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"{proc_root}/{pid}/fd"):
        try:
            target = os.readlink(f"{proc_root}/{pid}/fd/{fd}")
        except FileNotFoundError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def socket_inodes(pid: int, proc_root: str) -> set[str]:
    """Inodes of the sockets process PID holds; when root may not look, a child process that
    takes the owner's identity looks instead (this one stays root for the next process)."""
    try:
        return _read_inodes(pid, proc_root)
    except PermissionError:
        if os.geteuid() != 0:
            return set()
    except OSError:
        return set()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            become_owner(pid, proc_root)
            os.write(write, " ".join(sorted(_read_inodes(pid, proc_root))).encode())
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(write)
    with os.fdopen(read) as answer:
        text = answer.read()
    _, status = os.waitpid(child, 0)
    return set(text.split()) if status == 0 else set()


def held_by(pattern: str, inodes: set[str], proc_root: str) -> int | None:
    """The pid of a matching process that holds one of INODES."""
    for pid in sorted(processes(pattern, proc_root)):
        if socket_inodes(pid, proc_root) & inodes:
            return pid
    return None


def connect(address: str, port: int, timeout: float, tls_ca: str | None) -> socket.socket:
    """A connection to the service; with TLS_CA, over TLS, its certificate checked against that CA."""
    conn = socket.create_connection((address.strip("[]"), port), timeout=timeout)
    if tls_ca is None:
        return conn
    try:
        return ssl.create_default_context(cafile=tls_ca).wrap_socket(conn, server_hostname=address.strip("[]"))
    except BaseException:
        conn.close()
        raise


def probe(address: str, port: int, send: bytes | None, timeout: float, tls_ca: str | None = None,
          listen: bool = True) -> bytes:
    """What the service says within TIMEOUT after connecting (and sending SEND); without
    LISTEN, nothing: connecting (over TLS, the handshake) is all."""
    with connect(address, port, timeout, tls_ca) as conn:
        if not listen:
            return b""
        if send:
            conn.sendall(send)
        received = b""
        while len(received) < 65536:
            try:
                chunk = conn.recv(4096)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLEOFError):
                # Closing with our request unread resets the connection: what came before is the answer.
                if not received:
                    raise
                break
            if not chunk:
                break
            received += chunk
            if send is None or not send.startswith(b"GET "):
                break
        return received


def status_ok(code: int, codes: str | None) -> bool:
    if codes:
        return str(code) in codes.split(",")
    return 200 <= code < 500


def check_port(argv: list[str] | None) -> int:
    parser = Parser(prog="healthcheck_port", description=__doc__,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("port", type=int, help="TCP port number")
    parser.add_argument("--host", help="local address the listener must be bound to (a wildcard bind counts)")
    parser.add_argument("--owner", help="a process of this container whose command line contains this holds it")
    parser.add_argument("--send", help="text to send after connecting (\\r, \\n, \\xNN escapes allowed)")
    parser.add_argument("--expect", help="regular expression the answer must match (bytes read as latin-1)")
    parser.add_argument("--http", metavar="PATH", help="send an HTTP GET of PATH; --status says which codes count")
    parser.add_argument("--status", metavar="CODES", help="comma-separated HTTP codes (default: 200-499)")
    parser.add_argument("--tls-ca", metavar="FILE", help="speak TLS, checking the certificate against this CA")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for an answer (default 5)")
    parser.add_argument("--proc-root", default="/proc", help="where /proc is mounted (default /proc; for tests)")
    args = parser.parse_args(argv)
    if args.host is not None:
        try:
            ipaddress.ip_address(args.host)
        except ValueError:
            parser.error(f"--host {args.host!r} is not an IP address")
    if args.tls_ca is not None and not os.access(args.tls_ca, os.R_OK):
        parser.error(f"--tls-ca {args.tls_ca}: cannot read it")
    found = listeners(args.port, args.host, args.proc_root)
    where = f" on {args.host}" if args.host else ""
    if not found:
        print(f"unhealthy: nothing listening on TCP port {args.port}{where}")
        return 1
    listening = next(iter(found.values()))
    said = ""
    if args.send is not None or args.expect is not None or args.http is not None or args.tls_ca is not None:
        target = args.host or "127.0.0.1"
        send = codecs.decode(args.send, "unicode_escape").encode("latin-1") if args.send is not None else None
        if args.http is not None:
            send = (f"GET {args.http} HTTP/1.0\r\nHost: {target}:{args.port}\r\nConnection: close\r\n"
                    f"User-Agent: mortar-healthcheck\r\n\r\n").encode()
        try:
            answer = probe(target, args.port, send, args.timeout, args.tls_ca,
                           listen=send is not None or args.expect is not None)
        except ssl.SSLError as exc:  # a certificate the CA did not sign or naming another address, or no TLS
            print(f"unhealthy: {target}:{args.port} listens but its TLS is refused ({exc})")
            return 1
        except OSError as exc:
            print(f"unhealthy: {target}:{args.port} listens but does not answer ({exc.strerror or exc})")
            return 1
        text = answer.decode("latin-1")
        if args.http is not None:
            match = re.match(r"HTTP/\d(?:\.\d)? (\d{3})", text)
            if not match or not status_ok(int(match.group(1)), args.status):
                got = match.group(1) if match else repr(text[:40])
                print(f"unhealthy: GET {args.http} on {target}:{args.port} answered {got}")
                return 1
            said = f", GET {args.http} answered {match.group(1)}"
        if args.expect is not None:
            if not re.search(args.expect, text, re.S):
                print(f"unhealthy: {target}:{args.port} answered {text[:60]!r}, not /{args.expect}/")
                return 1
            said += ", answered as expected"
        if args.tls_ca is not None:
            said += f", over TLS (certificate signed by {args.tls_ca})"
    if args.owner:
        # Last: reading another user's sockets may mean taking that user's identity.
        pid = held_by(args.owner, set(found), args.proc_root)
        if pid is None:
            print(f"unhealthy: {listening} is not held by a {args.owner!r} process of this container")
            return 1
        said = f" by {args.owner!r} (pid {pid})" + said
    print(f"healthy: listening on {listening}{said}")
    return 0


def check_established(argv: list[str] | None) -> int:
    parser = Parser(prog="healthcheck_established",
                    description="Healthy (exit 0) when a process whose command line contains PROCESS holds an "
                                "ESTABLISHED TCP connection to remote port PORT; otherwise exit 1.")
    parser.add_argument("process", help="substring of the process command line, e.g. nova-compute")
    parser.add_argument("port", type=int, help="remote TCP port, e.g. 5672 for RabbitMQ")
    parser.add_argument("--proc-root", default="/proc", help="where /proc is mounted (default /proc; for tests)")
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
    print(f"unhealthy: {args.process!r} (pid {pids}) has no ESTABLISHED connection to remote port {args.port}")
    return 1


CHECKS = {"healthcheck_port": check_port, "healthcheck_established": check_established}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    name = os.path.basename(sys.argv[0]).removesuffix(".py")
    if name not in CHECKS:
        # Run as healthcheck_socket: the first argument names the check (port, established).
        if not argv or f"healthcheck_{argv[0]}" not in CHECKS:
            print("unhealthy: run as healthcheck_port or healthcheck_established (or give port/established first)")
            return 1
        name, argv = f"healthcheck_{argv[0]}", argv[1:]
    return CHECKS[name](argv)


if __name__ == "__main__":
    sys.exit(main())
