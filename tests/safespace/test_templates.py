"""Templates are compiled once per process and shared by every environment made for pages and
mail (web/templates.py), and an edited template is never served from the kept code."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader

from safespace.web.templates import _COMPILED, template_environment


def _compiles(env: Environment) -> list[str]:
    """Names of the templates this environment compiles from here on."""
    seen: list[str] = []
    compile_ = env.compile

    def counted(source, name=None, filename=None, *args, **kwargs):
        seen.append(name)
        return compile_(source, name, filename, *args, **kwargs)

    env.compile = counted  # type: ignore[method-assign]
    return seen


def test_a_second_environment_uses_the_templates_the_first_compiled() -> None:
    first, second = template_environment(), template_environment()
    first.get_template("base.html")
    compiled = _compiles(second)
    page = second.get_template("base.html")
    assert compiled == []
    assert page.name == "base.html" and callable(page.root_render_func)  # from the kept code


def test_an_edited_template_is_compiled_again(tmp_path: Path) -> None:
    (tmp_path / "note.html").write_text("first {{ word }}")

    def environment() -> Environment:
        return Environment(loader=FileSystemLoader(tmp_path), bytecode_cache=_COMPILED, auto_reload=False)

    assert environment().get_template("note.html").render(word="version") == "first version"
    (tmp_path / "note.html").write_text("second {{ word }}")
    again = environment()
    compiled = _compiles(again)
    assert again.get_template("note.html").render(word="version") == "second version"
    assert compiled == ["note.html"]
