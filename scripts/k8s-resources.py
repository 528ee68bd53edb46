#!/usr/bin/env python3
"""Write mortar/k8s/resources.yaml from a running all-in-one: each container's memory now
(docker stats), rounded up to 16 MiB, as its Kubernetes memory request; CPU requests are
small fixed shares (an idle cloud uses little, and requests only reserve scheduling room).

Run on a deployed all-in-one, ideally after `mortar verify` has exercised it:
    .venv/bin/python scripts/k8s-resources.py
"""

from __future__ import annotations

import datetime
import math
import subprocess
from pathlib import Path

import yaml

OUT = Path(__file__).resolve().parent.parent / "mortar" / "k8s" / "resources.yaml"
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def mebibytes(text: str) -> float:
    for unit, factor in sorted(UNITS.items(), key=lambda u: -len(u[0])):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor / 1024**2
    raise ValueError(text)


def main() -> None:
    names = subprocess.run(["docker", "ps", "--filter", "label=org.mortar.managed", "--format", "{{.Names}}"],
                           capture_output=True, text=True, check=True).stdout.split()
    if not names:
        raise SystemExit("no mortar container runs here: deploy the all-in-one first")
    stats = subprocess.run(["docker", "stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", *names],
                           capture_output=True, text=True, check=True).stdout
    containers = {}
    for line in stats.splitlines():
        name, used = line.split()[0], line.split()[1]
        containers[name] = {"cpu": "50m", "memory": f"{max(16, math.ceil(mebibytes(used) / 16) * 16)}Mi"}
    text = ("# Kubernetes resource requests per container, measured on a running all-in-one by\n"
            f"# scripts/k8s-resources.py ({datetime.date.today()}): memory in use, rounded up to 16 MiB.\n")
    OUT.write_text(text + yaml.safe_dump({"default": {"cpu": "50m", "memory": "128Mi"},
                                          "containers": dict(sorted(containers.items()))}, sort_keys=False))
    print(f"wrote {OUT} ({len(containers)} containers)")


if __name__ == "__main__":
    main()
