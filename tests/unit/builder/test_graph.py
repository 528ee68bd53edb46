import pytest

from mortar.builder import graph
from mortar.errors import MortarError


def test_parents_from_every_stage_runtime_parent_last(make_tree):
    tree = make_tree()
    assert tree.specs["svc-base"].parents == ["builder", "base"]
    assert tree.specs["svc-base"].runtime_parent == "base"
    assert tree.specs["svc-api"].parents == ["svc-base"]
    assert tree.specs["base"].parents == [] and tree.specs["base"].external == ["debian:trixie"]


def test_order_puts_parents_first_and_selection_pulls_ancestors(make_tree):
    tree = make_tree()
    order = graph.with_ancestors(tree.specs, ["svc-api"])
    assert order == ["base", "builder", "svc-base", "svc-api"]
    assert "other" not in order


def test_select_regex_search_and_unknown_pattern():
    names = ["nova-api", "nova-base", "keystone", "neutron-server"]
    assert graph.select(names, ["nova"]) == ["nova-api", "nova-base"]
    assert graph.select(names, ["^keystone$", "neutron"]) == ["keystone", "neutron-server"]
    with pytest.raises(MortarError) as err:
        graph.select(names, ["cinder"])
    assert "cinder" in str(err.value) and "--list-images" in str(err.value)
    with pytest.raises(MortarError):
        graph.select(names, ["("])


def test_cycle_is_reported():
    specs = {"a": graph.ImageSpec("a", "", ["b"]), "b": graph.ImageSpec("b", "", ["a"])}
    with pytest.raises(MortarError) as err:
        graph.topological_order(specs, ["a"])
    assert "cycle" in str(err.value)


def test_descendants(make_tree):
    tree = make_tree()
    assert graph.descendants(tree.specs, "base") == {"builder", "svc-base", "svc-api", "other"}
    assert graph.descendants(tree.specs, "svc-base") == {"svc-api"}


def test_tree_lines_indent_children(make_tree):
    lines = graph.tree_lines(make_tree().specs)
    assert lines[0].startswith("base")
    assert "  svc-base  (build stage from builder)" in lines
    assert "    svc-api" in lines


def test_override_changing_from_changes_the_tree(make_tree, tmp_path):
    override = tmp_path / "o.j2"
    override.write_text("{% if image_name == 'other' %}FROM {{ parent('svc-base') }}\n{% else %}"
                        "{% extends parent_template %}{% endif %}")
    # An override is a full template: it can even replace an image's FROM.
    tree = make_tree(template_override=override)
    assert tree.specs["other"].parents == ["svc-base"]


def test_profiles_are_data_and_cover_core():
    from mortar.builder.templates import IMAGES_DIR

    profiles = graph.load_profiles(IMAGES_DIR / "profiles.yaml")
    assert {"infra", "core", "all"} <= set(profiles)
    names = graph.discover_images(IMAGES_DIR)
    core = graph.select(names, profiles["core"])
    for wanted in ("keystone", "nova-compute", "neutron-server", "horizon", "ovn-sb-db", "mariadb-server"):
        assert wanted in core
