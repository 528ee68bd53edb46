import hashlib

from mortar.builder.builder import context_tar
from mortar.builder.identity import image_identity
from mortar.builder.lock import Lock

BASE_ID = "sha256:" + "0" * 64


def identities(tree, base_id=BASE_ID):
    return dict(tree.compute_identities(base_id))


def test_identity_is_stable(make_tree):
    assert identities(make_tree()) == identities(make_tree())


def test_tag_and_namespace_do_not_change_identity(make_tree):
    assert identities(make_tree()) == identities(make_tree(tag="other", namespace="acme"))


def test_base_image_id_changes_every_identity(make_tree):
    a, b = identities(make_tree()), identities(make_tree(), "sha256:" + "1" * 64)
    assert all(a[n] != b[n] for n in a)


def test_dockerfile_change_changes_image_and_descendants_only(make_tree, tmp_path):
    override = tmp_path / "o.j2"
    override.write_text("{% extends parent_template %}{% block svc_base_header %}RUN x{% endblock %}")
    a, b = identities(make_tree()), identities(make_tree(template_override=override))
    assert a["svc-base"] != b["svc-base"] and a["svc-api"] != b["svc-api"]
    assert a["base"] == b["base"] and a["builder"] == b["builder"] and a["other"] == b["other"]


def test_context_file_change_changes_identity(make_tree, mini_images):
    a = identities(make_tree())
    (mini_images / "base" / "start").write_text("#!/bin/sh\necho changed\n")
    b = identities(make_tree())
    assert all(a[n] != b[n] for n in a)


def test_lock_entries_change_only_their_image(make_tree):
    a = identities(make_tree())
    b = identities(make_tree(lock=Lock("3.13", "x", {"svc-base": ["alpha==1.1", "beta==2.0"]})))
    assert a["svc-base"] != b["svc-base"] and a["svc-api"] != b["svc-api"]
    assert a["base"] == b["base"] and a["other"] == b["other"]


def test_plugin_changes_only_its_image(make_tree):
    a = identities(make_tree())
    b = identities(make_tree(plugins={"svc-api": ["networking-foo==1.0"]}))
    assert a["svc-api"] != b["svc-api"]
    assert {n: a[n] for n in a if n != "svc-api"} == {n: b[n] for n in b if n != "svc-api"}


def test_ca_bundle_goes_only_where_copied(make_tree):
    tree = make_tree()
    assert "build-ca.crt" not in tree.context("svc-base")
    assert "requirements.txt" in tree.context("svc-base")
    assert tree.context("svc-base")["requirements.txt"] == b"alpha==1.0\nbeta==2.0\n"
    assert "plugins.txt" not in tree.context("svc-api")


def test_identity_changes_with_each_input():
    base = image_identity("FROM x", {"a": b"1"}, ["p"])
    assert image_identity("FROM y", {"a": b"1"}, ["p"]) != base
    assert image_identity("FROM x", {"a": b"2"}, ["p"]) != base
    assert image_identity("FROM x", {"b": b"1"}, ["p"]) != base
    assert image_identity("FROM x", {"a": b"1"}, ["q"]) != base
    assert image_identity("FROM x", {"a": b"1"}, ["p"]) == base


def test_context_tar_is_reproducible():
    a = context_tar("FROM x\n", {"f": b"1", "g": b"#!/bin/sh\n"}).getvalue()
    b = context_tar("FROM x\n", {"g": b"#!/bin/sh\n", "f": b"1"}).getvalue()
    assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()
