"""Keystone registrations (service, endpoints, service users) in one openstacksdk session."""

from __future__ import annotations

from typing import Any

from mortar.deploy.desired import Registration

SERVICE_PROJECT = "service"
SERVICE_ROLES = ("admin", "service")


def connect(admin: dict[str, str]):
    import openstack

    return openstack.connect(auth_url=admin["auth_url"], username=admin["username"], password=admin["password"],
                             project_name=admin["project_name"], user_domain_name="Default",
                             project_domain_name="Default", region_name=admin["region_name"],
                             identity_api_version="3", load_yaml_config=False, load_envvars=False)


def register(admin: dict[str, str], reg: Registration, conn: Any = None) -> None:
    conn = conn or connect(admin)
    identity = conn.identity
    region = admin["region_name"]
    service = next((s for s in identity.services() if s.name == reg.service and s.type == reg.type), None)
    if service is None:
        service = identity.create_service(name=reg.service, type=reg.type, description=reg.description)
    existing = {e.interface: e for e in identity.endpoints(service_id=service.id) if e.region_id == region}
    for interface, url in reg.endpoints.items():
        endpoint = existing.get(interface)
        if endpoint is None:
            identity.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=region)
        elif endpoint.url != url:
            identity.update_endpoint(endpoint, url=url)
    if not reg.users:
        return
    domain = identity.find_domain("Default")
    project = identity.find_project(SERVICE_PROJECT, domain_id=domain.id)
    if project is None:
        project = identity.create_project(name=SERVICE_PROJECT, domain_id=domain.id)
    roles = {}
    for role_name in SERVICE_ROLES:
        roles[role_name] = identity.find_role(role_name) or identity.create_role(name=role_name)
    for entry in reg.users:
        user = identity.find_user(entry["name"], domain_id=domain.id)
        if user is None:
            user = identity.create_user(name=entry["name"], password=entry["password"], domain_id=domain.id,
                                        default_project_id=project.id)
        else:
            identity.update_user(user, password=entry["password"])
        for role in roles.values():
            identity.assign_project_role_to_user(project, user, role)
