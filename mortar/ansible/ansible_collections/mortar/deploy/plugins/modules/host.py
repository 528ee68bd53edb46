#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before their imports
"""Ansible module: one step of mortar's converge code on this host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host
short_description: Converge a host to the state mortar computed for it
description:
  - Runs one step of mortar's per-host converge code (the same Python the local executor
    runs) against this host's Docker Engine, and reports what changed.
  - The desired state is a JSON file written by mortar (mode 0600: it holds rendered
    config files); the mortar library is a zip of mortar's pure-Python host code.
options:
  step:
    description: What to do.
    required: true
    type: str
    choices: [plan, prepare, before, containers, after, pull, stop, destroy, prechecks, engine]
  state:
    description: Path of the desired-state JSON file on the host.
    type: path
    default: /var/lib/mortar/desired.json
  lib:
    description: Path of the mortar library zip on the host.
    required: true
    type: path
  services:
    description: Services of this step (apply phases only).
    type: list
    elements: str
    default: []
  force_jobs:
    description: Jobs to run even if their inputs did not change (run-always jobs of changed services).
    type: list
    elements: str
    default: []
  state_dir:
    description: Where mortar keeps rendered files and job records on the host.
    type: path
    default: /var/lib/mortar
  log_dir:
    description: Where job logs go on the host.
    type: path
    default: /var/log/mortar/deploy
  insecure_registries:
    description: Plain-HTTP registries the engine must trust (step engine).
    type: list
    elements: str
    default: []
author: mortar developers
"""

RETURN = r"""
report:
  description: host, step, changed, lines (what was done), actions (step plan).
  type: dict
  returned: always
checks:
  description: prechecks results (ok, what, fix).
  type: list
  returned: when step is prechecks
"""

import contextlib
import io
import json
import sys
import traceback

from ansible.module_utils.basic import AnsibleModule


def run(module: AnsibleModule) -> dict:
    params = module.params
    sys.path.insert(0, params["lib"])
    from pathlib import Path

    from mortar.deploy import converge
    from mortar.deploy.model import host_state_from_dict

    step = params["step"]
    if step == "engine":
        from mortar.engine.setup import setup_engine

        report = setup_engine(params["insecure_registries"], restart=True)
        changed = report.installed or report.config_changed or report.started != "already running"
        return {"changed": changed, "report": {"host": "", "step": step, "changed": changed, "actions": [],
                                               "lines": [f"engine {report.started}"] if changed else []}}
    with open(params["state"]) as handle:
        data = json.load(handle)
    host = host_state_from_dict(data["host"])
    secrets = data["secrets"]
    state_dir = Path(params["state_dir"])
    if step == "prechecks":
        from mortar.deploy.prechecks import host_checks

        checks = host_checks(host)
        return {"changed": False, "checks": [vars(c) for c in checks]}
    import docker

    engine = docker.from_env(timeout=120)
    if step == "plan":
        result = converge.plan_host(engine, host, state_dir, secrets)
    elif step == "prepare":
        result = converge.prepare_host(engine, host, state_dir, secrets)
    elif step in ("before", "containers", "after"):
        result = converge.apply_phase(engine, host, params["services"], step, params["force_jobs"], state_dir,
                                      secrets, float(data["timeout"]), Path(params["log_dir"]))
    elif step == "pull":
        result = converge.pull_images(engine, host)
    elif step == "stop":
        result = converge.stop_host(engine, host, data["order"])
    else:
        result = converge.destroy_host(engine, host.site, state_dir)
    result.host = host.host
    return {"changed": result.changed, "report": result.to_dict()}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "step": {"type": "str", "required": True,
                     "choices": ["plan", "prepare", "before", "containers", "after", "pull", "stop", "destroy",
                                 "prechecks", "engine"]},
            "state": {"type": "path", "default": "/var/lib/mortar/desired.json"},
            "lib": {"type": "path", "required": True},
            "services": {"type": "list", "elements": "str", "default": []},
            "force_jobs": {"type": "list", "elements": "str", "default": []},
            "state_dir": {"type": "path", "default": "/var/lib/mortar"},
            "log_dir": {"type": "path", "default": "/var/log/mortar/deploy"},
            "insecure_registries": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=False,
    )
    # Anything the library prints would corrupt the module's JSON answer.
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            result = run(module)
    except Exception as exc:  # noqa: BLE001 - every failure goes back to mortar as a message
        if hasattr(exc, "fix"):
            module.fail_json(msg=str(exc))
        module.fail_json(msg=f"{type(exc).__name__}: {exc}", exception=traceback.format_exc())
    if captured.getvalue().strip():
        result.setdefault("report", {}).setdefault("lines", []).append(captured.getvalue().strip())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
