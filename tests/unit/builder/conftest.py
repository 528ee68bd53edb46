from pathlib import Path

import pytest

from mortar.builder.builder import BuildOptions, ImageTree
from mortar.builder.lock import Lock
from tests.unit.fakeengine import refuse_engine_connections

MINI_TREE = {
    "macros.j2": "{% macro apt_install(p) %}{% if p %}RUN apt-get install -y {{ p | join(' ') }}{% endif %}"
                 "{% endmacro %}\n",
    "base/Dockerfile.j2": "FROM {{ base_image }}\n{% import 'macros.j2' as macros with context %}\n"
                          "{% block header %}{% endblock %}\n"
                          "{{ macros.apt_install(customizable('base_packages', ['tini', 'python3'])) }}\n"
                          "COPY start /usr/local/bin/start\n{% block footer %}{% endblock %}\n",
    "base/start": "#!/bin/sh\necho start\n",
    "builder/Dockerfile.j2": "FROM {{ parent('base') }}\nRUN apt-get install gcc\n",
    "svc-base/Dockerfile.j2": "FROM {{ parent('builder') }} AS build\nCOPY requirements.txt /tmp/\n"
                              "FROM {{ parent('base') }}\n{% block header %}{% endblock %}\n"
                              "{% block svc_base_header %}{% endblock %}\nCOPY --from=build /venv /venv\n"
                              "{% block footer %}{% endblock %}\n",
    "svc-api/Dockerfile.j2": "FROM {{ parent('svc-base') }}\n{% block header %}{% endblock %}\n"
                             "{% if plugins %}COPY plugins.txt /tmp/\n{% endif %}"
                             "{% block svc_api_footer %}{% endblock %}\n{% block footer %}{% endblock %}\n",
    "other/Dockerfile.j2": "FROM {{ parent('base') }}\n{% block footer %}{% endblock %}\n",
}


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse_engine_connections(monkeypatch)


@pytest.fixture
def mini_images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for name, text in MINI_TREE.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def mini_lock() -> Lock:
    return Lock("3.13", "x", {"svc-base": ["alpha==1.0", "beta==2.0"]})


@pytest.fixture
def make_tree(mini_images: Path, mini_lock: Lock, tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")

    def make(**overrides) -> ImageTree:
        lock = overrides.pop("lock", mini_lock)
        overrides.setdefault("logs_dir", tmp_path / "logs")
        options = BuildOptions(images_dir=mini_images, ca_bundle=ca, **overrides)
        return ImageTree(options, lock=lock)

    return make
