#!/usr/bin/env python3
"""Upgrade benchmark: the all-in-one upgrade's wall time per path and each API's longest outage.

For each path given (default: 2026.1:2026.2 and 2025.1:2026.1), one site: the core set with
its data plane deployed at the first series, a server booted on it, then `mortar upgrade` to
the second while every API's endpoint is polled once a second. Prints, per path: the upgrade's
wall time (the images of both series are in the local store: `mortar build --profile core
--release S` first) and, per API, the longest time it did not answer. Uses its own site and
state directories and destroys each deployment. Compare ratios from one run: these machines
are noisy.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deploy import DATA_PLANE, ROOT, guest_running, mortar  # noqa: E402

ENDPOINTS = {"keystone": "http://127.0.0.1:5000/v3", "glance": "http://127.0.0.1:9292/",
             "placement": "http://127.0.0.1:8778/", "neutron": "http://127.0.0.1:9696/",
             "nova": "http://127.0.0.1:8774/", "horizon": "http://127.0.0.1:80/auth/login/"}


class Poller(threading.Thread):
    """Asks every endpoint once a second; an answer below 500 counts as up."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()
        self.down_since: dict[str, float | None] = dict.fromkeys(ENDPOINTS)
        self.longest: dict[str, float] = dict.fromkeys(ENDPOINTS, 0.0)

    def run(self) -> None:
        while not self.stopping.is_set():
            tick = time.monotonic()
            for name, url in ENDPOINTS.items():
                self.observe(name, up(url), tick)
            self.stopping.wait(max(0.0, 1.0 - (time.monotonic() - tick)))

    def observe(self, name: str, ok: bool, now: float) -> None:
        since = self.down_since[name]
        if not ok and since is None:
            self.down_since[name] = now
        elif ok and since is not None:
            self.longest[name] = max(self.longest[name], now - since)
            self.down_since[name] = None

    def stop(self) -> dict[str, float]:
        self.stopping.set()
        self.join(timeout=10)
        now = time.monotonic()
        for name, since in self.down_since.items():
            if since is not None:
                self.longest[name] = max(self.longest[name], now - since)
        return {name: round(seconds, 1) for name, seconds in self.longest.items()}


def up(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
        return True
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def one_path(start: str, target: str, root: Path) -> dict:
    site, state = root / f"site-{start}", root / f"state-{start}"
    mortar(site, state, "init")
    (site / "globals.yml").write_text(yaml.safe_dump({"openstack_release": start, **DATA_PLANE}))
    mortar(site, state, "genpwd")
    try:
        deployed, _ = mortar(site, state, "deploy")
        mortar(site, state, "post-deploy")
        mortar(site, state, "guest-image", site_args=False)
        mortar(site, state, "init-runonce")
        guest_running(site)
        poller = Poller()
        poller.start()
        upgraded, _ = mortar(site, state, "upgrade", "--release", target)
        outages = poller.stop()
        verified, out = mortar(site, state, "verify")
        return {"path": f"{start} -> {target}", "deploy_seconds": round(deployed, 1),
                "upgrade_seconds": round(upgraded, 1), "longest_outage_seconds": outages,
                "verify_after": out.strip().splitlines()[-1]}
    finally:
        mortar(site, state, "destroy", "--yes-i-really-really-mean-it")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", default=["2026.1:2026.2", "2025.1:2026.1"], metavar="FROM:TO")
    parser.add_argument("--work", type=Path, default=Path("/tmp/mortar-bench-upgrade"),
                        help="Where the benchmark's sites and state live.")
    args = parser.parse_args()
    results = []
    for path in args.paths:
        start, _, target = path.partition(":")
        results.append(one_path(start, target, args.work))
        print(json.dumps(results[-1]), flush=True)
    print(json.dumps({"root": str(ROOT), "results": results}, indent=1))


if __name__ == "__main__":
    main()
