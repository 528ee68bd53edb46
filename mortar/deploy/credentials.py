"""`mortar post-deploy`: admin credentials for the operator (files are 0600)."""

from __future__ import annotations

from pathlib import Path

import yaml

from mortar.deploy.model import write_private


def write_credentials(deployment, directory: Path) -> list[Path]:
    admin = deployment.desired.admin
    clouds = {"clouds": {"mortar": {
        "auth": {"auth_url": admin["auth_url"], "username": admin["username"], "password": admin["password"],
                 "project_name": admin["project_name"], "user_domain_name": "Default",
                 "project_domain_name": "Default"},
        "region_name": admin["region_name"], "identity_api_version": 3, "interface": "public"}}}
    openrc = (f"# source me: admin credentials of the mortar cloud\n"
              f"export OS_AUTH_URL={admin['auth_url']}\nexport OS_USERNAME={admin['username']}\n"
              f"export OS_PASSWORD='{admin['password']}'\nexport OS_PROJECT_NAME={admin['project_name']}\n"
              f"export OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n"
              f"export OS_REGION_NAME={admin['region_name']}\nexport OS_IDENTITY_API_VERSION=3\n")
    clouds_path, openrc_path = directory / "clouds.yaml", directory / "admin-openrc.sh"
    write_private(clouds_path, yaml.safe_dump(clouds, sort_keys=False))
    write_private(openrc_path, openrc)
    return [clouds_path, openrc_path]
