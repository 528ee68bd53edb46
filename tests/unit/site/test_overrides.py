"""Tests for merging operator overrides into rendered config files (mortar/site/overrides.py)."""

from __future__ import annotations

import configparser
import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mortar.errors import MortarError
from mortar.site.overrides import (
    apply_overrides,
    check_override_tree,
    merge_ini,
    merge_yaml,
    override_sources,
)

Ini = dict[str, dict[str, str]]
# Shared CI machines make per-example timings noisy; correctness, not speed, is under test here.
relaxed = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_ini(text: str) -> Ini:
    # DEFAULT is read as an ordinary section so its keys are not copied into every other section.
    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\x00no-default")
    parser.read_string(text)
    return {section: dict(parser[section]) for section in parser.sections()}


def ini_error(base: str, *overrides: tuple[str, str]) -> MortarError:
    with pytest.raises(MortarError) as info:
        merge_ini(base, *overrides)
    return info.value


def test_override_replaces_key_and_appends_new_ones() -> None:
    base = "[DEFAULT]\ndebug = False\nlog_dir = /var/log/nova\n\n[database]\nconnection = sqlite://\n"
    override = "[DEFAULT]\ndebug=True\ntransport_url = rabbit://u:p@h:5672//\n[libvirt]\nvirt_type = qemu\n"
    merged = merge_ini(base, ("global.conf", override))
    assert merged == (
        "[DEFAULT]\ndebug = True\nlog_dir = /var/log/nova\ntransport_url = rabbit://u:p@h:5672//\n\n"
        "[database]\nconnection = sqlite://\n\n"
        "[libvirt]\nvirt_type = qemu\n"
    )


def test_later_override_wins() -> None:
    merged = merge_ini("[a]\nx = 0\n", ("1", "[a]\nx = 1\ny = 1\n"), ("2", "[a]\nx = 2\n"))
    assert read_ini(merged) == {"a": {"x": "2", "y": "1"}}


def test_keys_case_insensitive_sections_case_sensitive() -> None:
    merged = merge_ini("[Sec]\nDebug = False\n", ("o", "[Sec]\ndebug = True\n[sec]\ndebug = other\n"))
    assert merged == "[Sec]\nDebug = True\n\n[sec]\ndebug = other\n"


def test_default_section_is_supported() -> None:
    merged = merge_ini("[api]\nauth = keystone\n", ("o", "[DEFAULT]\ndebug = True\n"))
    assert merged == "[api]\nauth = keystone\n\n[DEFAULT]\ndebug = True\n"
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(merged)
    assert parser.defaults() == {"debug": "True"}
    assert parser["api"]["auth"] == "keystone"


@pytest.mark.parametrize(
    "value",
    [
        "mysql+pymysql://nova:p%40ss=w:rd@10.0.0.1:3306/nova?charset=utf8",
        "%(interpolation)s stays literal",
        "a = b : c",
        "with  inner   spaces",
        "# not a comment",
        "value ; with semicolon",
        "",
        "[brackets]",
    ],
)
def test_special_values_survive(value: str) -> None:
    merged = merge_ini("[database]\nconnection = old\n", ("o", f"[database]\nconnection={value}\n"))
    assert read_ini(merged) == {"database": {"connection": value}}
    assert merge_ini(merged) == merged


def test_colon_separator_and_spacing_styles() -> None:
    merged = merge_ini("[s]\na=1\nb = 2\nc: 3\nd :4\n")
    assert merged == "[s]\na = 1\nb = 2\nc = 3\nd = 4\n"


def test_comments_dropped_and_duplicate_sections_merged() -> None:
    base = "# header\n[a]\n; note\nx = 1\n\n[b]\ny = 2\n[a]\nz = 3\n"
    assert merge_ini(base) == "[a]\nx = 1\nz = 3\n\n[b]\ny = 2\n"


def test_multiline_values_are_kept() -> None:
    base = "[pipeline:main]\npipeline =\n    cors\n    keystone\n    app\n"
    merged = merge_ini(base)
    assert merged == base
    assert read_ini(merged)["pipeline:main"]["pipeline"] == "\ncors\nkeystone\napp"


def test_repeated_key_is_replaced_as_a_whole() -> None:
    base = "[pci]\nalias = a\nalias = b\nother = 1\n"
    merged = merge_ini(base, ("o", "[pci]\nalias = c\nalias = d\nalias = e\n"))
    assert merged == "[pci]\nalias = c\nalias = d\nalias = e\nother = 1\n"
    assert merge_ini(base) == base


def test_empty_inputs() -> None:
    assert merge_ini("") == ""
    assert merge_ini("", ("o", "[a]\nb = c\n")) == "[a]\nb = c\n"
    assert merge_ini("[a]\nb = c\n", ("o", "# only a comment\n\n")) == "[a]\nb = c\n"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("debug = True\n", 1, "outside any section"),
        ("# c\n\n[a]\nx = 1\njust words\n", 5, "expected 'key = value'"),
        ("[a\nx = 1\n", 1, "malformed section header"),
        ("[]\n", 1, "malformed section header"),
        ("[a]]\n", 1, "malformed section header"),
        ("[a]\n = value\n", 2, "missing key"),
        ("    continued\n", 1, "outside any section"),
    ],
)
def test_malformed_override_names_source_and_line(text: str, line: int, needle: str) -> None:
    err = ini_error("[a]\nx = 0\n", ("config/nova.conf", "[a]\ny = 1\n"), ("config/nova/nova.conf", text))
    assert err.file == "config/nova/nova.conf"
    assert err.key == f"line {line}"
    assert needle in err.message
    assert err.fix
    assert str(err).startswith(f"config/nova/nova.conf: line {line}: ")


def test_malformed_base_names_the_template() -> None:
    err = ini_error("orphan = 1\n")
    assert err.file == "<rendered template>"
    assert err.key == "line 1"
    with pytest.raises(MortarError) as info:
        merge_ini("orphan = 1\n", base_name="nova.conf.j2")
    assert info.value.file == "nova.conf.j2"


def test_merge_yaml_deep_merges_and_replaces_lists() -> None:
    base = "a:\n  b: 1\n  c: [1, 2]\n  d: {e: 1}\nz: keep\n"
    merged = merge_yaml(base, ("g", "a:\n  c: [3]\n  d: {f: 2}\n"), ("h", "a: {b: 9}\nnew: true\n"))
    assert merged == yaml.safe_dump(
        {"a": {"b": 9, "c": [3], "d": {"e": 1, "f": 2}}, "z": "keep", "new": True}, sort_keys=False
    )


def test_merge_yaml_scalar_replaces_mapping_and_back() -> None:
    assert yaml.safe_load(merge_yaml("a: {b: 1}\n", ("o", "a: 5\n"))) == {"a": 5}
    assert yaml.safe_load(merge_yaml("a: 5\n", ("o", "a: {b: 1}\n"))) == {"a": {"b": 1}}
    assert yaml.safe_load(merge_yaml("- 1\n", ("o", "a: 1\n"))) == {"a": 1}


def test_merge_yaml_empty_override_changes_nothing() -> None:
    assert merge_yaml("a: 1\n", ("o", ""), ("p", "# comment only\n")) == "a: 1\n"
    assert merge_yaml("", ("o", "a: 1\n")) == "a: 1\n"
    assert merge_yaml("") == ""


@pytest.mark.parametrize("bad", ["a: [1, 2\n", "a: 1\n b: 2\n", "a: 1\n---\nb: 2\n", "x: @bad\n"])
def test_merge_yaml_malformed_names_source(bad: str) -> None:
    with pytest.raises(MortarError) as info:
        merge_yaml("a: 1\n", ("config/prometheus/prometheus.yml", bad))
    assert info.value.file == "config/prometheus/prometheus.yml"
    assert info.value.key is not None and info.value.key.startswith("line ")
    assert "malformed YAML" in info.value.message
    assert info.value.fix


def test_merge_yaml_does_not_mutate_across_calls() -> None:
    base = "a: {b: [1]}\n"
    once = merge_yaml(base, ("o", "a: {c: 2}\n"))
    assert merge_yaml(base) == "a:\n  b:\n  - 1\n"
    assert once == merge_yaml(base, ("o", "a: {c: 2}\n"))


def test_apply_overrides_kinds() -> None:
    assert apply_overrides("[a]\nx = 1\n", "ini", [("o", "[a]\nx=2\n")]) == "[a]\nx = 2\n"
    assert apply_overrides("a: 1\n", "yaml", [("o", "b: 2\n")]) == "a: 1\nb: 2\n"
    assert apply_overrides("{}", "replace", [("g", "first"), ("h", "last\n")]) == "last\n"
    for kind in ("ini", "yaml", "replace"):
        assert apply_overrides("untouched # text", kind, []) == "untouched # text"


@pytest.mark.parametrize(("dest", "text", "needle"), [
    ("/etc/nova/policy.yaml", '"os_compute_api:servers:create": [rule\n', "malformed YAML"),
    ("/etc/nova/policy.yml", "a: 1\n b: 2\n", "malformed YAML"),
    ("/etc/rabbitmq/definitions.json", '{"users": [}\n', "invalid JSON"),
])
def test_replacement_must_parse_as_what_it_replaces(dest: str, text: str, needle: str) -> None:
    source = "config/nova/" + dest.rsplit("/", 1)[1]
    with pytest.raises(MortarError) as info:
        apply_overrides("{}", "replace", [("config/nova.conf", "ignored"), (source, text)], dest)
    assert info.value.file == source
    assert info.value.key is not None and info.value.key.startswith("line ")
    assert needle in info.value.message
    assert info.value.fix


def test_replacement_of_other_files_is_taken_as_it_is() -> None:
    text = "SECRET_KEY = 'x'\n[not: yaml\n"
    assert apply_overrides("old", "replace", [("o", text)], "/etc/openstack-dashboard/local_settings.py") == text
    assert apply_overrides("{}", "replace", [("o", "a: [1]\n")], "/etc/nova/policy.yaml") == "a: [1]\n"


@pytest.mark.parametrize("override", ["just words\n", "- a\n- b\n", "42\n"])
def test_merge_yaml_override_must_be_a_mapping_over_a_mapping(override: str) -> None:
    with pytest.raises(MortarError) as info:
        apply_overrides("global:\n  scrape_interval: 15s\n", "yaml", [("config/prometheus/prometheus.yml", override)])
    assert info.value.file == "config/prometheus/prometheus.yml"
    assert "mapping" in info.value.message
    assert info.value.fix


@pytest.mark.parametrize(("override", "needle"), [("[1, 2]", "override is a list"), ("{nope", "invalid JSON")])
def test_merge_json_errors_name_the_source(override: str, needle: str) -> None:
    with pytest.raises(MortarError) as info:
        apply_overrides('{"a": 1}', "json", [("config/x/x.json", override)])
    assert info.value.file == "config/x/x.json"
    assert needle in info.value.message


def test_apply_overrides_unknown_kind() -> None:
    with pytest.raises(MortarError) as info:
        apply_overrides("x", "toml", [("o", "y")])
    assert info.value.key == "kind"
    assert "toml" in info.value.message


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def override_tree(root: Path) -> Path:
    config = root / "config"
    write(config / "global.conf", "[DEFAULT]\nlevel = global\nfrom_global = 1\n")
    write(config / "nova.conf", "[DEFAULT]\nlevel = service\nfrom_service = 1\n")
    write(config / "nova" / "nova.conf", "[DEFAULT]\nlevel = file\nfrom_file = 1\n")
    write(config / "nova" / "node1" / "nova.conf", "[DEFAULT]\nlevel = host\nfrom_host = 1\n")
    write(config / "nova" / "node2" / "nova.conf", "[DEFAULT]\nlevel = other-host\n")
    write(config / "nova" / "policy.yaml", "replaced: true\n")
    return config


def test_override_sources_in_merge_order(tmp_path: Path) -> None:
    config = override_tree(tmp_path)
    sources = override_sources(config, "nova", "nova.conf", "node1", main=True)
    assert [name for name, _ in sources] == [
        str(config / "global.conf"),
        str(config / "nova.conf"),
        str(config / "nova" / "nova.conf"),
        str(config / "nova" / "node1" / "nova.conf"),
    ]
    merged = read_ini(apply_overrides("[DEFAULT]\nlevel = template\nfrom_template = 1\n", "ini", sources))
    assert merged == {"DEFAULT": {"level": "host", "from_template": "1", "from_global": "1", "from_service": "1",
                                  "from_file": "1", "from_host": "1"}}


def test_override_sources_each_level_beats_the_previous(tmp_path: Path) -> None:
    config = override_tree(tmp_path)
    (config / "nova" / "node1" / "nova.conf").unlink()
    assert read_ini(apply_overrides("", "ini", override_sources(config, "nova", "nova.conf", "node1", main=True))
                    )["DEFAULT"]["level"] == "file"
    (config / "nova" / "nova.conf").unlink()
    assert read_ini(apply_overrides("", "ini", override_sources(config, "nova", "nova.conf", "node1", main=True))
                    )["DEFAULT"]["level"] == "service"
    (config / "nova.conf").unlink()
    assert read_ini(apply_overrides("", "ini", override_sources(config, "nova", "nova.conf", "node1", main=True))
                    )["DEFAULT"]["level"] == "global"


def test_override_sources_not_main_skips_global_and_service_conf(tmp_path: Path) -> None:
    config = override_tree(tmp_path)
    assert override_sources(config, "nova", "policy.yaml", "node1", main=False) == [
        (str(config / "nova" / "policy.yaml"), "replaced: true\n")
    ]
    assert [n for n, _ in override_sources(config, "nova", "nova.conf", "node3", main=False)] == [
        str(config / "nova" / "nova.conf")
    ]
    assert override_sources(config, "glance", "glance-api.conf", "node1", main=False) == []
    assert override_sources(tmp_path / "missing", "nova", "nova.conf", "node1", main=True) == []


def test_override_sources_directory_instead_of_file(tmp_path: Path) -> None:
    config = tmp_path / "config"
    (config / "nova" / "nova.conf").mkdir(parents=True)
    with pytest.raises(MortarError) as info:
        override_sources(config, "nova", "nova.conf", "node1", main=False)
    assert info.value.file == str(config / "nova" / "nova.conf")


# What each service renders: overrides may name only these files.
FILES = {"nova": {"nova.conf", "policy.yaml"}, "glance": {"glance-api.conf"}}


@pytest.mark.parametrize(("content", "needle"), [(b"\x00\x01\x02", "binary"), (b"[DEFAULT]\nx = \xe9\n", "UTF-8"),
                                                (None, "broken symlink")])
def test_override_sources_unreadable_file(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "config" / "nova" / "nova.conf"
    path.parent.mkdir(parents=True)
    if content is None:
        path.symlink_to(tmp_path / "nowhere")
    else:
        path.write_bytes(content)
    with pytest.raises(MortarError) as info:
        override_sources(tmp_path / "config", "nova", "nova.conf", "node1", main=False)
    assert info.value.file == str(path)
    assert needle in info.value.message
    assert info.value.fix


def test_check_override_tree_accepts_valid_tree(tmp_path: Path) -> None:
    config = override_tree(tmp_path)
    write(config / ".gitkeep", "")
    (config / ".git").mkdir()
    check_override_tree(config, FILES, {"node1", "node2"})
    check_override_tree(tmp_path / "absent", {"nova": {"nova.conf"}}, {"node1"})


@pytest.mark.parametrize(
    ("relative", "is_dir", "expected"),
    [
        ("nvoa", True, "unknown service 'nvoa' in override path (did you mean 'nova'?)"),
        ("nvoa.conf", False, "unknown service 'nvoa' in override path (did you mean 'nova'?)"),
        ("glboal.conf", False, "unknown service 'glboal' in override path (did you mean 'global'?)"),
        ("nova/nod1", True, "unknown host 'nod1' in override path (did you mean 'node1'?)"),
        ("zzzzzz", True, "unknown service 'zzzzzz' in override path (known services: glance, nova)"),
        ("notes.txt", False, "unexpected file in the override directory"),
        ("nova", False, "expected a directory for service 'nova'"),
        ("nova/node1/sub", True, "unexpected directory in a per-host override directory"),
        ("nova/api-paste.ini", False, "unknown nova file 'api-paste.ini' in override path (known nova files: "
                                      "nova.conf, policy.yaml)"),
        ("nova/nova.cnf", False, "unknown nova file 'nova.cnf' in override path (did you mean 'nova.conf'?)"),
        ("nova/node1/api-paste.ini", False, "unknown nova file 'api-paste.ini'"),
        ("glance/nova.conf", False, "unknown glance file 'nova.conf'"),
        ("nova/nova.conf", True, "override is a directory, expected a file"),
    ],
)
def test_check_override_tree_rejects(tmp_path: Path, relative: str, is_dir: bool, expected: str) -> None:
    config = tmp_path / "config"
    target = config / relative
    if is_dir:
        target.mkdir(parents=True)
    else:
        write(target, "")
    with pytest.raises(MortarError) as info:
        check_override_tree(config, FILES, {"node1", "node2"})
    assert info.value.file == str(target)
    assert expected in str(info.value)
    assert str(info.value).startswith(f"{target}: ")


def test_check_override_tree_config_dir_is_a_file(tmp_path: Path) -> None:
    config = write(tmp_path / "config", "")
    with pytest.raises(MortarError) as info:
        check_override_tree(config, {"nova": {"nova.conf"}}, set())
    assert info.value.file == str(config)


def names(first: str, rest: str) -> st.SearchStrategy[str]:
    return st.builds(str.__add__, st.sampled_from(first), st.text(rest, max_size=8))


sections = st.sampled_from(["DEFAULT", "database", "keystone_authtoken", "pipeline:main"]) | names(
    string.ascii_letters, string.ascii_letters + string.digits + "_:-")
keys = st.sampled_from(["debug", "Debug", "DEBUG", "connection", "host"]) | names(
    string.ascii_letters + "_", string.ascii_letters + string.digits + "_.-")
value_chars = string.ascii_letters + string.digits + " %=:;#[]{}()'\"/@!?.,*&^$~+-_"
first_lines = st.text(value_chars, max_size=20).map(str.strip)
more_lines = names(string.ascii_letters + string.digits, string.ascii_letters + string.digits + " %=:").map(str.strip)
values = st.tuples(first_lines, st.lists(more_lines, max_size=2)).map(lambda t: "\n".join([t[0], *t[1]]))
separators = st.sampled_from([" = ", "=", ": ", " :", "  =  "])
entries = st.lists(st.tuples(keys, separators, values), max_size=5)


@st.composite
def ini_texts(draw: st.DrawFn) -> str:
    lines: list[str] = []
    for section, items in draw(st.lists(st.tuples(sections, entries), max_size=5)):
        if draw(st.booleans()):
            lines.append(draw(st.sampled_from(["# comment", "; comment", "", "#key = value"])))
        lines.append(f"[{section}]")
        for key, sep, value in items:
            first, *rest = value.split("\n")
            lines.append(f"{key}{sep}{first}")
            lines.extend(f"  {line}" for line in rest)
        lines.append("")
    return "\n".join(lines)


@relaxed
@given(ini_texts())
def test_merge_ini_without_overrides_round_trips(base: str) -> None:
    merged = merge_ini(base)
    assert read_ini(merged) == read_ini(base)
    assert merge_ini(merged) == merged


@relaxed
@given(ini_texts(), ini_texts())
def test_merge_ini_override_wins_and_base_kept(base: str, override: str) -> None:
    merged = read_ini(merge_ini(base, ("override", override)))
    expected = read_ini(base)
    for section, items in read_ini(override).items():
        expected.setdefault(section, {}).update(items)
    assert merged == expected


@relaxed
@given(ini_texts(), ini_texts())
def test_merge_ini_is_idempotent(base: str, override: str) -> None:
    once = merge_ini(base, ("o", override))
    assert merge_ini(once, ("o", override)) == once


@relaxed
@given(ini_texts(), ini_texts(), ini_texts())
def test_merge_ini_chains(base: str, first: str, second: str) -> None:
    assert merge_ini(base, ("a", first), ("b", second)) == merge_ini(merge_ini(base, ("a", first)), ("b", second))


yaml_keys = st.sampled_from(["a", "b", "c", "d"]) | st.text(string.ascii_letters + string.digits + " -_.", max_size=6)
yaml_scalars = (st.none() | st.booleans() | st.integers(-1000, 1000)
                | st.text(string.ascii_letters + string.digits + " :#-'\"", max_size=10))
yaml_values = st.recursive(
    yaml_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(yaml_keys, inner, min_size=1, max_size=3),
    max_leaves=12,
)
yaml_docs = st.dictionaries(yaml_keys, yaml_values, max_size=5)


def leaves(data: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    if isinstance(data, dict) and data:
        found: dict[tuple[str, ...], Any] = {}
        for key, value in data.items():
            found.update(leaves(value, (*prefix, key)))
        return found
    return {prefix: data}


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False)


@relaxed
@given(yaml_docs)
def test_merge_yaml_without_overrides_round_trips(base: dict[str, Any]) -> None:
    assert yaml.safe_load(merge_yaml(dump(base)) or "{}") == base


@relaxed
@given(yaml_docs, yaml_docs)
def test_merge_yaml_override_leaves_win_and_base_leaves_kept(base: dict[str, Any], override: dict[str, Any]) -> None:
    merged = leaves(yaml.safe_load(merge_yaml(dump(base), ("o", dump(override))) or "{}"))
    override_leaves = {path: value for path, value in leaves(override).items() if path}
    for path, value in override_leaves.items():
        assert merged[path] == value
    for path, value in leaves(base).items():
        # An override leaf at or above this path, or a mapping replacing this leaf, hides the base value.
        shadowed = any(path[:i] in override_leaves for i in range(1, len(path) + 1)) or any(
            o[: len(path)] == path for o in override_leaves)
        if path and not shadowed:
            assert merged[path] == value
    assert set(merged) <= set(override_leaves) | set(leaves(base)) | {()}


@relaxed
@given(yaml_docs, yaml_docs)
def test_merge_yaml_is_idempotent(base: dict[str, Any], override: dict[str, Any]) -> None:
    once = merge_yaml(dump(base), ("o", dump(override)))
    assert merge_yaml(once, ("o", dump(override))) == once
