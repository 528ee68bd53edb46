#!/usr/bin/env python3
"""Write `removed` in mortar/images/config-options.yaml: for each series, the options of each
file listed there that the series before it knew and it does not.

Runs oslo-config-generator (JSON output) in the image of each series that reads the file
(`NAMESPACE/IMAGE:SERIES`, built first with `mortar build --release SERIES`), with no network,
and compares consecutive series. Run it when a series is added or a file's namespaces change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from mortar.releases import releases  # noqa: E402

DATA = ROOT / "mortar" / "images" / "config-options.yaml"


def known_options(image: str, namespaces: list[str]) -> dict[str, dict[str, set[str]]]:
    """namespace -> section -> option names (with the old names an option is still read under),
    as the image's code declares them. A namespace the image cannot load is absent."""
    args = [a for n in namespaces for a in ("--namespace", n)]
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "oslo-config-generator",
                           image, "--format", "json", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{image}: oslo-config-generator failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    known: dict[str, dict[str, set[str]]] = {}
    for section, group in json.loads(proc.stdout)["options"].items():
        for opt in group["opts"]:
            names = known.setdefault(opt["namespace"], {})
            names.setdefault(section, set()).add(opt["name"])
            for old in opt.get("deprecated_opts") or []:
                names.setdefault(old.get("group") or section, set()).add(old["name"])
    missing = sorted(set(namespaces) - set(known))
    if missing:
        print(f"{image}: namespace(s) not loaded, not compared: {', '.join(missing)}", flush=True)
    return known


def removed(before: dict[str, dict[str, set[str]]], after: dict[str, dict[str, set[str]]]) -> dict[str, list[str]]:
    """section -> options BEFORE declared and AFTER does not (under any name or namespace); only
    namespaces both load count, so one an image cannot load hides nothing as removed."""
    now: dict[str, set[str]] = {}
    for sections in after.values():
        for section, names in sections.items():
            now.setdefault(section, set()).update(names)
    gone: dict[str, set[str]] = {}
    for namespace in set(before) & set(after):
        for section, names in before[namespace].items():
            gone.setdefault(section, set()).update(names - now.get(section, set()))
    return {section: sorted(names) for section, names in sorted(gone.items()) if names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--namespace", default="mortar", help="image namespace (default: mortar)")
    args = parser.parse_args()
    text = DATA.read_text()
    data = yaml.safe_load(text)
    series = releases().names()
    result: dict[str, dict[str, dict[str, list[str]]]] = {}
    for name, decl in data["files"].items():
        known = {s: known_options(f"{args.namespace}/{decl['image']}:{s}", decl["namespaces"]) for s in series}
        for before, after in zip(series, series[1:], strict=False):
            gone = removed(known[before], known[after])
            if gone:
                result.setdefault(after, {})[name] = gone
            print(f"{name} {before} -> {after}: {sum(len(v) for v in gone.values())} option(s) removed", flush=True)
    head = text[:text.index("\nremoved:")]
    DATA.write_text(head + "\n" + yaml.safe_dump({"removed": result}, sort_keys=True, width=110))
    print(f"wrote {DATA}")


if __name__ == "__main__":
    main()
