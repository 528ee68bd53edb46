"""Invariants of the architecture that no single module's tests can see.

The engine (planner, executors, host agent, verifier, Ansible module) knows no service by
name: adding a service means adding a catalogue folder, never touching an executor. Comments
and docstrings may name services as examples; code may not.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

import pytest

import mortar

ROOT = Path(mortar.__file__).resolve().parent
CATALOGUE = ROOT / "catalogue"
ENGINE = [ROOT / "deploy", ROOT / "deploy" / "executors", ROOT / "agent", ROOT / "verify", ROOT / "ansible",
          ROOT / "k8s"]
# Text a Python 3.12+ tokenizer gives an f-string's literal parts as (3.11 gives the whole STRING).
CODE_TOKENS = {tokenize.NAME, tokenize.STRING} | ({tokenize.FSTRING_MIDDLE} if hasattr(tokenize, "FSTRING_MIDDLE")
                                                 else set())


def service_names() -> set[str]:
    folders = {p.parent.name for p in CATALOGUE.glob("*/service.yaml")}
    return folders | {name.replace("_", "-") for name in folders}


def engine_files() -> list[Path]:
    return sorted({path for folder in ENGINE for path in folder.rglob("*.py")})


def name_pattern(names: set[str]) -> re.Pattern[str]:
    # A whole word: '_' and '-' separate words too, so `nova_compute` and `keystone-url` name a service.
    words = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"(?<![a-z0-9])(?:{words})(?![a-z0-9])", re.IGNORECASE)


def docstring_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Where the module's, classes' and functions' docstrings are, as (start, end) positions."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                    and isinstance(first.value.value, str)):
                spans.append(((first.lineno, first.col_offset), (first.end_lineno or first.lineno,
                                                                  first.end_col_offset or 0)))
    return spans


def names_in_code(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, token) of every name or string of SOURCE, outside comments and docstrings, naming one of NAMES."""
    pattern = name_pattern(names)
    docstrings = docstring_spans(source)
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in CODE_TOKENS:
            continue  # comments among them
        if token.type == tokenize.STRING and any(start <= token.start < end for start, end in docstrings):
            continue
        if pattern.search(token.string):
            found.append((token.start[0], token.string))
    return found


def test_the_catalogue_and_the_engine_are_where_this_test_looks() -> None:
    names = service_names()
    assert {"keystone", "mariadb", "node_exporter", "node-exporter", "mysqld-exporter"} <= names
    files = engine_files()
    assert ROOT / "deploy" / "desired.py" in files and ROOT / "deploy" / "executors" / "ansible.py" in files
    assert ROOT / "agent" / "converge.py" in files and ROOT / "verify" / "checks.py" in files
    assert any(p.is_relative_to(ROOT / "ansible") for p in files)
    # The engine's prose does name services (as examples): what the test skips is really there.
    assert any(name_pattern(names).search(p.read_text()) for p in files)


@pytest.mark.parametrize("path", engine_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_engine_names_no_service(path: Path) -> None:
    found = names_in_code(path.read_text(), service_names())
    assert found == [], f"{path.relative_to(ROOT)} names services in code: {found}"


SNIPPET = '''\
"""Module docstring naming keystone is fine."""
# so is a comment about nova
import os


class Runner:
    """Runs mariadb? Only in a docstring."""

    def run(self) -> str:
        """Nova here too."""
        os.environ.get("KEY")  # keystone
        return "keystone"


MYSQLD = "mysqld-exporter"
nova_compute = f"{os.sep}placement"
novalike = "rabbitmqish"
'''


def test_a_service_named_in_code_is_found_and_comments_and_docstrings_are_not() -> None:
    found = names_in_code(SNIPPET, service_names())
    assert found == [(12, '"keystone"'), (15, '"mysqld-exporter"'), (16, "nova_compute"),
                     (16, 'f"{os.sep}placement"')] or found == [
        # A Python 3.12+ tokenizer splits the f-string: its literal part is what names the service.
        (12, '"keystone"'), (15, '"mysqld-exporter"'), (16, "nova_compute"), (16, "placement")]


def test_a_string_that_only_looks_like_a_docstring_is_code() -> None:
    source = 'def f():\n    x = 1\n    "keystone"\n    return x\n'
    assert names_in_code(source, {"keystone"}) == [(3, '"keystone"')]
