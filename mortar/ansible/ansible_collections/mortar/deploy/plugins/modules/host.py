#!/usr/bin/python
# ruff: noqa: E402 - Ansible modules put DOCUMENTATION before their imports
"""Ansible module: one step of mortar's host agent on this host."""

from __future__ import annotations

DOCUMENTATION = r"""
module: host
short_description: Run one step of mortar's host agent on this host
description:
  - Runs one registered step of mortar's host agent (the same Python the local executor
    runs) against this host's container engine, and reports what it saw and changed.
  - The steps are those of the agent's registry (mortar.agent.steps), e.g. plan, prepare,
    provision, before, containers, after, pull, stop, destroy, prechecks, engine; an unknown
    step fails with the list the agent knows.
  - The desired state is a JSON file written by mortar (mode 0600: it holds this host's
    rendered config files and only the secrets they use).
options:
  lib:
    description: Path of the mortar agent zip on the host.
    required: true
    type: path
  step:
    description: The agent step to run.
    required: true
    type: str
  host:
    description: This host's inventory name.
    required: true
    type: str
  state:
    description: Path of the desired-state JSON file on the host (absent before the first deploy).
    type: path
    default: /var/lib/mortar/desired.json
  request:
    description: The controller's request for this step (wire format; no secrets).
    type: dict
    default: {}
  state_dir:
    description: Where mortar keeps rendered files and job records on the host.
    type: path
    default: /var/lib/mortar
  log_dir:
    description: Where job logs go on the host.
    type: path
    default: /var/log/mortar/deploy
author: mortar developers
"""

RETURN = r"""
report:
  description: The agent's step report (wire format) - lines, actions, facts, checks, failure.
  type: dict
  returned: always
"""

import contextlib
import io
import os
import sys

from ansible.module_utils.basic import AnsibleModule


def run(module: AnsibleModule) -> dict:
    params = module.params
    sys.path.insert(0, params["lib"])
    from pathlib import Path

    from mortar.agent import steps, wire
    from mortar.engine import connect

    if os.path.exists(params["state"]):
        with open(params["state"]) as handle:
            host = wire.loads(wire.HostState, handle.read(), params["state"])
    else:
        host = wire.HostState(params["host"], "")
    request = wire.decode(wire.StepRequest, params["request"] or {}, "request")
    report = steps.dispatch(params["step"], request, host, Path(params["state_dir"]), Path(params["log_dir"]),
                            connect)
    report.host = params["host"]
    return {"changed": report.changed, "report": wire.encode(report),
            "failure": report.failure.text() if report.failure else ""}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "lib": {"type": "path", "required": True},
            "step": {"type": "str", "required": True},
            "host": {"type": "str", "required": True},
            "state": {"type": "path", "default": "/var/lib/mortar/desired.json"},
            "request": {"type": "dict", "default": {}},
            "state_dir": {"type": "path", "default": "/var/lib/mortar"},
            "log_dir": {"type": "path", "default": "/var/log/mortar/deploy"},
        },
        supports_check_mode=False,
    )
    # Nothing the agent prints may corrupt the module's JSON answer.
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        result = run(module)
    if captured.getvalue().strip():
        result["report"].setdefault("lines", []).append(captured.getvalue().strip()[-2000:])
    if result["failure"]:
        module.fail_json(msg=result.pop("failure"), **result)
    result.pop("failure")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
