"""Render image Dockerfile templates, with an operator's override file on top.

Every image is `images/<name>/Dockerfile.j2`. An override file (`--template-override`)
starts with `{% extends parent_template %}` and fills named blocks (`header`, `footer` in
every image, `<image>_header`/`<image>_footer` in one) or sets package-list variables
(`<list>_append`, `<list>_remove`, `<list>_override`) without forking mortar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from mortar.errors import MortarError

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"


@jinja2.pass_context
def customizable(ctx: jinja2.runtime.Context, list_name: str, default: list[str]) -> list[str]:
    """A package list the override file can append to, remove from or replace."""
    override = ctx.get(f"{list_name}_override")
    items = list(override) if override is not None else list(default)
    for extra in ctx.get(f"{list_name}_append") or []:
        if extra not in items:
            items.append(extra)
    removed = set(ctx.get(f"{list_name}_remove") or [])
    return [item for item in items if item not in removed]


class Renderer:
    """One Jinja environment for the whole image tree (plus the operator's overrides)."""

    def __init__(self, variables: dict[str, Any], override: Path | None = None,
                 images_dir: Path = IMAGES_DIR) -> None:
        self.images_dir = images_dir
        self.variables = variables
        self.override_source: str | None = None
        self.override_path = override
        if override is not None:
            try:
                self.override_source = override.read_text()
            except OSError as exc:
                raise MortarError(f"cannot read template override: {exc.strerror}", file=str(override),
                                  fix="pass an existing file to --template-override") from exc
        loader = jinja2.FileSystemLoader(str(images_dir))
        self.env = jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined,
                                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
        self.env.globals["customizable"] = customizable
        if self.override_source is not None:
            self._check_override()

    def _check_override(self) -> None:
        assert self.override_source is not None
        try:
            parsed = self.env.parse(self.override_source)
        except jinja2.TemplateSyntaxError as exc:
            raise MortarError(f"line {exc.lineno}: {exc.message}", file=str(self.override_path),
                              fix="fix the Jinja2 syntax of the override file") from exc
        if parsed.find(jinja2.nodes.Extends) is None:
            raise MortarError("an override file must start with {% extends parent_template %}",
                              file=str(self.override_path))

    def render(self, image: str) -> str:
        template_name = f"{image}/Dockerfile.j2"
        context = dict(self.variables, image_name=image)
        try:
            template = self.env.get_template(template_name)
            if self.override_source is not None:
                context["parent_template"] = template
                template = self.env.from_string(self.override_source)
            return template.render(context)
        except jinja2.TemplateSyntaxError as exc:
            where = str(self.override_path) if exc.filename is None and self.override_path else (
                exc.filename or template_name)
            raise MortarError(f"line {exc.lineno}: {exc.message}", file=where) from exc
        except jinja2.UndefinedError as exc:
            where = str(self.override_path) if self.override_path else template_name
            raise MortarError(f"while rendering image {image}: {exc.message}", file=where,
                              fix="define the variable or fix its name") from exc
