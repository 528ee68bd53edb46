from pathlib import Path

import pytest

from mortar.errors import MortarError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "override.j2"
    path.write_text(text)
    return path


def test_renders_parent_refs_and_base(make_tree):
    tree = make_tree(namespace="acme", tag="t1", base_image="corp/debian:13")
    assert tree.specs["base"].dockerfile.startswith("FROM corp/debian:13\n")
    assert "FROM acme/svc-base:t1" in tree.specs["svc-api"].dockerfile


def test_header_and_footer_blocks_fill_every_image(make_tree, tmp_path):
    override = write(tmp_path, "{% extends parent_template %}\n{% block header %}RUN echo site-header{% endblock %}\n"
                               "{% block footer %}RUN echo site-footer{% endblock %}\n")
    tree = make_tree(template_override=override)
    for name in ("base", "svc-base", "svc-api"):
        assert "RUN echo site-header" in tree.specs[name].dockerfile
    for name in ("base", "svc-base", "svc-api", "other"):
        assert "RUN echo site-footer" in tree.specs[name].dockerfile
    assert "site-header" not in tree.specs["builder"].dockerfile


def test_image_specific_block_touches_one_image(make_tree, tmp_path):
    override = write(tmp_path, "{% extends parent_template %}{% block svc_api_footer %}RUN only-api{% endblock %}")
    tree = make_tree(template_override=override)
    assert "RUN only-api" in tree.specs["svc-api"].dockerfile
    assert all("only-api" not in tree.specs[n].dockerfile for n in tree.specs if n != "svc-api")


@pytest.mark.parametrize("body, expected", [
    ("{% set base_packages_append = ['vim', 'tini'] %}", "tini python3 vim"),
    ("{% set base_packages_remove = ['python3'] %}", "RUN apt-get install -y tini\n"),
    ("{% set base_packages_override = ['busybox'] %}", "RUN apt-get install -y busybox\n"),
    ("{% set base_packages_override = ['a', 'b'] %}{% set base_packages_remove = ['a'] %}"
     "{% set base_packages_append = ['c'] %}", "RUN apt-get install -y b c\n"),
])
def test_package_lists_append_remove_override(make_tree, tmp_path, body, expected):
    tree = make_tree(template_override=write(tmp_path, "{% extends parent_template %}" + body))
    assert expected in tree.specs["base"].dockerfile


def test_override_without_extends_is_rejected(make_tree, tmp_path):
    with pytest.raises(MortarError) as err:
        make_tree(template_override=write(tmp_path, "{% block header %}x{% endblock %}"))
    assert "override.j2" in str(err.value) and "extends parent_template" in str(err.value)


def test_override_syntax_error_names_file_and_line(make_tree, tmp_path):
    with pytest.raises(MortarError) as err:
        make_tree(template_override=write(tmp_path, "{% extends parent_template %}\n{% block header %}\n"))
    assert "override.j2" in str(err.value) and "line" in str(err.value)


def test_undefined_variable_in_override_is_named(make_tree, tmp_path):
    override = write(tmp_path, "{% extends parent_template %}{% block footer %}{{ no_such_var }}{% endblock %}")
    with pytest.raises(MortarError) as err:
        make_tree(template_override=override)
    assert "no_such_var" in str(err.value)


def test_real_tree_renders_every_image():
    from mortar.builder.builder import BuildOptions, ImageTree

    tree = ImageTree(BuildOptions())
    expected = {"base", "python-builder", "openstack-base", "keystone", "glance-api", "placement-api",
                "nova-base", "nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "neutron-server",
                "horizon", "mariadb-server", "memcached", "rabbitmq", "ovn-base", "ovn-northd", "ovn-nb-db",
                "ovn-sb-db"}
    assert expected <= set(tree.specs)
    # Runtime images never extend the build image: compilers stay in build stages.
    for name, spec in tree.specs.items():
        if name != "python-builder":
            assert spec.runtime_parent != "python-builder", name
    assert "gcc" not in tree.specs["keystone"].dockerfile.split("FROM mortar/openstack-base")[-1]


def test_ca_bundle_only_in_build_image():
    from mortar.builder.builder import BuildOptions, ImageTree

    tree = ImageTree(BuildOptions())
    users = [name for name in tree.specs if "build-ca.crt" in tree.context(name)]
    assert users == ["python-builder"]


def test_one_line_blocks_do_not_glue_onto_the_next_instruction(tmp_path):
    from mortar.builder.builder import BuildOptions, ImageTree

    override = write(tmp_path, "{% extends parent_template %}{% block header %}LABEL a=b{% endblock %}"
                               "{% block footer %}LABEL c=d{% endblock %}")
    tree = ImageTree(BuildOptions(template_override=override))
    for name, spec in tree.specs.items():
        lines = spec.dockerfile.splitlines()
        if name != "python-builder":
            assert "LABEL c=d" in lines, name
        if "LABEL a=b" in spec.dockerfile:
            assert "LABEL a=b" in lines, name


def test_build_stages_never_carry_the_build_images_identity():
    """A build stage's leftover image inherits python-builder's labels unless it clears them, and
    the build cache would then take that leftover (without pip, with a service's packages) for
    python-builder itself."""
    import re

    from mortar.builder.builder import BuildOptions, ImageTree

    tree = ImageTree(BuildOptions())
    staged = 0
    for name, spec in tree.specs.items():
        for stage in re.split(r"(?m)^(?=FROM )", spec.dockerfile):
            if stage.startswith("FROM ") and " AS build" in stage.splitlines()[0]:
                staged += 1
                assert 'LABEL org.mortar.identity="" org.mortar.image=""' in stage, name
    assert staged >= 7
