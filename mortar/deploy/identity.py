"""Registrations with the identity capability's API (services, endpoints, service users).

What is registered is read back from the identity service at plan time: nothing is
remembered, so a lost database or a `destroy --limit` of its host is seen and fixed by the
next deploy. The identity provider exports `auth_url`, `admin_username`, `admin_password`,
`admin_project` and `region`; this module speaks the OpenStack identity v3 API to it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from mortar.deploy.desired import Registration
from mortar.files import private_directory, write_private
from mortar.records import RecordStore

T = TypeVar("T")
SERVICE_PROJECT = "service"
SERVICE_ROLES = ("admin", "service")
TIMEOUT = 30


def connect(identity: dict[str, str], state: Path | None = None) -> Any:
    """An admin connection; with STATE, the admin token is kept there (0600) between runs,
    so a no-op deploy does not pay for a new one (an invalid one is replaced on its 401)."""
    import openstack.connection
    from keystoneauth1 import session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=identity["auth_url"], username=identity["admin_username"],
                       password=identity["admin_password"], project_name=identity["admin_project"],
                       user_domain_name="Default", project_domain_name="Default")
    cache = state / "admin-token.json" if state is not None else None
    cached = ""
    if cache is not None and cache.is_file():
        cached = cache.read_text()
        try:
            auth.set_auth_state(cached)
        except (ValueError, KeyError):
            cached = ""
    verify = identity.get("cacert") or True  # the site CA when the site speaks TLS
    conn = openstack.connection.Connection(session=session.Session(auth=auth, timeout=TIMEOUT, verify=verify),
                                           region_name=identity["region"], identity_api_version="3")
    conn.mortar_cached = bool(cached)  # type: ignore[attr-defined]
    if cache is not None:
        conn.mortar_keep_token = lambda: _keep_token(auth, cache, cached)  # type: ignore[attr-defined]
    return conn


def with_admin(identity: dict[str, str], state: Path | None, work: Callable[[Any], T]) -> T:
    """WORK(an admin connection); a kept token the identity service no longer honours (its
    database was made again, its keys rotated) is dropped and WORK runs once more afresh."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    conn = connect(identity, state)
    try:
        result = work(conn)
    except (ksa.Unauthorized, ksa.Forbidden, ksa.NotFound, sdk.NotFoundException, sdk.ForbiddenException):
        if not getattr(conn, "mortar_cached", False) or state is None:
            raise
        (state / "admin-token.json").unlink(missing_ok=True)
        conn = connect(identity, state)
        result = work(conn)
    if hasattr(conn, "mortar_keep_token"):
        conn.mortar_keep_token()
    return result


def _keep_token(auth: Any, cache: Path, cached: str) -> None:
    current = auth.get_auth_state()
    if current and current != cached:
        private_directory(cache.parent)
        write_private(cache, current)


def _proof(user_id: str, password: str) -> str:
    return hashlib.sha256(f"{user_id}\0{password}".encode()).hexdigest()


def _password_works(identity: dict[str, str], user: str, password: str) -> bool:
    from keystoneauth1 import exceptions, session
    from keystoneauth1.identity import v3

    auth = v3.Password(auth_url=identity["auth_url"], username=user, password=password,
                       project_name=SERVICE_PROJECT, user_domain_name="Default", project_domain_name="Default")
    try:
        session.Session(auth=auth, timeout=TIMEOUT, verify=identity.get("cacert") or True).get_token()
        return True
    except exceptions.Unauthorized:
        return False


def observe(identity: dict[str, str], registrations: dict[str, Registration],
            state: Path | None = None) -> dict[str, list[str]]:
    """For each registration, what differs in the identity service ([]: registered as desired).

    A password cannot be read back; proving it costs a login. A user whose password was proven
    is recorded by its id (a recreated user has a new id), so only new or changed ones log in."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    # An identity service that is not up yet is a plan's answer, not a warning on the terminal.
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    if not registrations:
        return {}
    proofs = RecordStore(state / "identity.json") if state is not None else None
    proven = proofs.get("proven", default={}) if proofs is not None else {}
    try:
        services, endpoints, users, assigned = with_admin(identity, state, _registered)
    except (ksa.ConnectFailure, ksa.ConnectTimeout, ksa.DiscoveryFailure, ksa.Unauthorized,
            sdk.NotSupported) as exc:
        why = f"identity service not reachable yet ({type(exc).__name__})"
        return {name: [why] for name in registrations}
    except (ksa.ClientException, sdk.SDKException) as exc:
        why = f"identity service answered {type(exc).__name__}"
        return {name: [why] for name in registrations}
    region = identity["region"]
    checks: list[tuple[str, str, str, str]] = []
    result: dict[str, list[str]] = {}
    for name, reg in registrations.items():
        reasons: list[str] = []
        service = next((s for s in services if s.name == reg.service and s.type == reg.type), None)
        if service is None:
            reasons.append(f"service {reg.service} ({reg.type}) not registered")
        else:
            have = {e.interface: e.url for e in endpoints if e.service_id == service.id and e.region_id == region}
            for interface, url in reg.endpoints.items():
                if have.get(interface) != url:
                    reasons.append(f"{interface} endpoint " + ("missing" if interface not in have else
                                                               f"is {have[interface]}, not {url}"))
        for entry in reg.users:
            user = users.get(entry["name"])
            if user is None:
                reasons.append(f"user {entry['name']} missing")
            elif not set(SERVICE_ROLES) <= assigned.get(user.id, set()):
                reasons.append(f"user {entry['name']} lacks a role in project {SERVICE_PROJECT}")
            elif proven.get(user.id) != _proof(user.id, entry["password"]):
                checks.append((name, str(user.id), entry["name"], entry["password"]))
        result[name] = reasons
    if checks:
        with ThreadPoolExecutor(max_workers=min(8, len(checks))) as pool:
            answers = list(pool.map(lambda c: _password_works(identity, c[2], c[3]), checks))
        for (name, user_id, user, password), works in zip(checks, answers, strict=True):
            if not works:
                result[name].append(f"user {user}'s password differs from passwords.yml")
            elif proofs is not None:
                proofs.set("proven", user_id, _proof(user_id, password))
    return result


def _registered(conn: Any) -> tuple[list[Any], list[Any], dict[str, Any], dict[str, set[str]]]:
    """Services, endpoints, users of the default domain, and each user's roles in the service project."""
    api = conn.identity
    services = list(api.services())
    endpoints = list(api.endpoints())
    domain = api.find_domain("Default")
    users = {u.name: u for u in api.users(domain_id=domain.id)}
    project = api.find_project(SERVICE_PROJECT, domain_id=domain.id)
    roles = {r.id: r.name for r in api.roles()}
    assigned: dict[str, set[str]] = {}
    if project is not None:
        for assignment in api.role_assignments(scope_project_id=project.id):
            user_id = (assignment.user or {}).get("id")
            role_id = (assignment.role or {}).get("id")
            if user_id and role_id in roles:
                assigned.setdefault(user_id, set()).add(roles[role_id])
    return services, endpoints, users, assigned


def register(identity: dict[str, str], reg: Registration, state: Path | None = None) -> None:
    """Make the identity service hold REG: idempotent, only what differs is written."""
    with_admin(identity, state, lambda conn: _register(conn, identity, reg, state))


def _register(conn: Any, identity: dict[str, str], reg: Registration, state: Path | None) -> None:
    api = conn.identity
    region = reg.region
    service = next((s for s in api.services() if s.name == reg.service and s.type == reg.type), None)
    if service is None:
        service = api.create_service(name=reg.service, type=reg.type, description=reg.description)
    existing = {e.interface: e for e in api.endpoints(service_id=service.id) if e.region_id == region}
    for interface, url in reg.endpoints.items():
        endpoint = existing.get(interface)
        if endpoint is None:
            api.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=region)
        elif endpoint.url != url:
            api.update_endpoint(endpoint, url=url)
    if not reg.users:
        return
    domain = api.find_domain("Default")
    project = api.find_project(SERVICE_PROJECT, domain_id=domain.id)
    if project is None:
        project = api.create_project(name=SERVICE_PROJECT, domain_id=domain.id)
    roles = {name: api.find_role(name) or api.create_role(name=name) for name in SERVICE_ROLES}
    for entry in reg.users:
        user = api.find_user(entry["name"], domain_id=domain.id)
        if user is None:
            user = api.create_user(name=entry["name"], password=entry["password"], domain_id=domain.id,
                                   default_project_id=project.id)
        elif not _password_works(identity, entry["name"], entry["password"]):
            api.update_user(user, password=entry["password"])
        for role in roles.values():
            api.assign_project_role_to_user(project, user, role)
        if state is not None:
            RecordStore(state / "identity.json").set("proven", user.id, _proof(user.id, entry["password"]))


def transient(exc: Exception) -> bool:
    """Worth another try: a dropped connection, 5xx or an empty version discovery (the load
    balancer has no backend up yet) from an identity service still warming up, or a 409 from
    a registration beside this one creating the same shared project."""
    from keystoneauth1 import exceptions as ksa
    from openstack import exceptions as sdk

    if isinstance(exc, ksa.ConnectFailure | ksa.ConnectTimeout | ksa.DiscoveryFailure | sdk.ConflictException
                  | sdk.NotSupported):
        return True
    status = getattr(exc, "status_code", None) or getattr(exc, "http_status", None)
    return isinstance(status, int) and (status >= 500 or status == 409)
