"""`mortar post-deploy`: admin credentials for the operator (files are 0600)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from mortar.errors import MortarError
from mortar.files import write_private


def write_credentials(deployment, directory: Path) -> list[Path]:
    identity = deployment.desired.identity
    if not identity:
        raise MortarError("no enabled service provides identity, so there are no admin credentials to write",
                          fix="enable the service that provides identity in globals.yml")
    clouds = {"clouds": {"mortar": {
        "auth": {"auth_url": identity["auth_url"], "username": identity["admin_username"],
                 "password": identity["admin_password"], "project_name": identity["admin_project"],
                 "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": identity["region"], "identity_api_version": 3, "interface": "public"}}}
    if identity.get("cacert"):  # the site speaks TLS: certificates are checked against its CA
        clouds["clouds"]["mortar"]["cacert"] = identity["cacert"]
    settings = {"OS_AUTH_URL": identity["auth_url"], "OS_USERNAME": identity["admin_username"],
                "OS_PASSWORD": identity["admin_password"], "OS_PROJECT_NAME": identity["admin_project"],
                "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                "OS_REGION_NAME": identity["region"], "OS_IDENTITY_API_VERSION": "3"}
    if identity.get("cacert"):
        settings["OS_CACERT"] = identity["cacert"]
    openrc = "# source me: admin credentials of the mortar cloud\n" + "".join(
        f"export {key}={shlex.quote(value)}\n" for key, value in settings.items())
    clouds_path, openrc_path = directory / "clouds.yaml", directory / "admin-openrc.sh"
    write_private(clouds_path, yaml.safe_dump(clouds, sort_keys=False))
    write_private(openrc_path, openrc)
    return [clouds_path, openrc_path]
