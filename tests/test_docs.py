"""The README and the deployment files stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from safespace.settings import setting_variables

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_starts_with_the_two_commands() -> None:
    first_commands = re.findall(r"^make \w+", README, flags=re.MULTILINE)[:2]
    assert first_commands == ["make run", "make test"]


def test_every_setting_is_in_the_readme_with_its_default() -> None:
    for variable, default in setting_variables():
        row = next((line for line in README.splitlines() if line.startswith(f"| `{variable}`")), None)
        assert row is not None, f"{variable} is missing from the README's settings table"
        shown = "" if default == "" else str(default)
        assert f"`{shown}`" in row or (shown == "" and "(empty)" in row), f"{variable}: default {default!r} not shown"


def test_readme_names_no_setting_that_does_not_exist() -> None:
    known = {variable for variable, _ in setting_variables()}
    mentioned = set(re.findall(r"SAFESPACE_[A-Z_]+[A-Z]", README))
    assert mentioned <= known, mentioned - known


def test_docker_compose_sets_only_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = {variable for variable, _ in setting_variables()}
    seen = set()
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        names = environment.keys() if isinstance(environment, dict) else [e.split("=", 1)[0] for e in environment]
        for variable in names:
            if variable.startswith("SAFESPACE_"):
                assert variable in known, f"service {name} sets {variable}, which is not a setting"
                seen.add(variable)
    assert "SAFESPACE_DATABASE_URL" in seen
    assert compose["services"]["db"]["healthcheck"], "PostgreSQL needs a healthcheck"
    assert "migrate" in compose["services"]


def test_dockerfile_runs_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")


def test_readme_screenshot_exists() -> None:
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert images and all((ROOT / image).is_file() for image in images)


def test_every_command_is_in_the_readme() -> None:
    import click

    from safespace.cli import main

    def names(group: click.Group, prefix: str = "safespace") -> list[str]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += names(command, f"{prefix} {name}")
            else:
                found.append(f"{prefix} {name}")
        return found

    missing = [name for name in names(main) if f"`{name}" not in README]
    assert not missing, f"commands missing from the README: {missing}"


# --- the threat model's claims and the privacy page ------------------------------------------------

THREAT_MODEL = (ROOT / "docs" / "THREAT_MODEL.md").read_text()
NODE_ID = re.compile(r"(tests/[\w/]+\.py)::([\w:]+)(?:\[[^\]]*\])?")


def existing_tests(test_file: Path) -> set[str]:
    """Node ids (without parameters) of the test functions in one file, found with ast: no import, no database."""
    import ast

    tree = ast.parse(test_file.read_text(), filename=str(test_file))
    found = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            found.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found |= {
                f"{node.name}::{item.name}"
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test")
            }
    return found


def claim_rows(document: str) -> list[tuple[str, str]]:
    """(claim id, test cell) of every row of the claim → test table."""
    section = document.split("## Claims and the tests that prove them", 1)
    assert len(section) == 2, "docs/THREAT_MODEL.md has lost its claim → test table"
    rows = []
    for line in section[1].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 3 and re.fullmatch(r"C\d+", cells[0]):
            rows.append((cells[0], cells[2]))
    return rows


def test_every_claim_of_the_threat_model_names_a_test() -> None:
    rows = claim_rows(THREAT_MODEL)
    assert len(rows) >= 30, f"only {len(rows)} claims parsed: has the table's layout changed?"
    ids = [claim for claim, _ in rows]
    assert len(ids) == len(set(ids)), "a claim number is used twice"
    for claim, cell in rows:
        assert NODE_ID.search(cell), f"{claim} names no test"
    # Every claim the text cites (C12, C6–C11) is in the table.
    cited = set(re.findall(r"\bC(\d+)\b", THREAT_MODEL.split("## Claims and the tests", 1)[0]))
    assert {f"C{n}" for n in cited} <= set(ids), sorted({f"C{n}" for n in cited} - set(ids))


def test_every_test_the_threat_model_names_exists() -> None:
    """Anywhere in the document: a claim that points at a missing (renamed, deleted) test fails here."""
    named = NODE_ID.findall(THREAT_MODEL)
    assert named
    missing = []
    for path, name in named:
        test_file = ROOT / path
        if not test_file.is_file() or name not in existing_tests(test_file):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/THREAT_MODEL.md names tests that do not exist: {missing}"


def test_the_claim_checker_catches_a_missing_test() -> None:
    """The check above is not vacuous: a made-up test and a made-up file are both caught."""
    table = (
        "## Claims and the tests that prove them\n\n| claim | what | test |\n|---|---|---|\n"
        "| C1 | real | `tests/test_docs.py::test_readme_starts_with_the_two_commands[x]` |\n"
        "| C2 | renamed | `tests/test_docs.py::test_that_was_renamed` |\n"
        "| C3 | moved | `tests/nowhere.py::test_readme_starts_with_the_two_commands` |\n"
    )
    found = {f"{p}::{n}": (ROOT / p).is_file() and n in existing_tests(ROOT / p) for p, n in NODE_ID.findall(table)}
    assert found == {
        "tests/test_docs.py::test_readme_starts_with_the_two_commands": True,
        "tests/test_docs.py::test_that_was_renamed": False,
        "tests/nowhere.py::test_readme_starts_with_the_two_commands": False,
    }
    assert [claim for claim, _ in claim_rows(table)] == ["C1", "C2", "C3"]


def test_privacy_page_exists_in_both_languages_with_the_same_sections() -> None:
    from safespace.identity.privacy_page import privacy_source

    english = privacy_source("en").read_text()
    spanish = privacy_source("es").read_text()
    headings = [re.findall(r"^#+ ", text, flags=re.MULTILINE) for text in (english, spanish)]
    assert headings[0] == headings[1] and len(headings[0]) >= 6, "the two languages have drifted apart"


def test_docs_privacy_is_the_text_of_the_privacy_page() -> None:
    """docs/PRIVACY*.md are links to the files the package ships and /privacy renders, not copies that could drift."""
    from safespace.identity.privacy_page import privacy_source

    for language, name in (("en", "PRIVACY.md"), ("es", "PRIVACY.es.md")):
        assert (ROOT / "docs" / name).resolve() == privacy_source(language).resolve()


def test_docker_image_installs_the_wheel_at_the_locked_versions() -> None:
    """The page's templates and texts are package data (tests/test_wheel.py): the image installs the
    wheel with requirements.lock as constraints, and copies nothing from the checkout beside it."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip wheel ", dockerfile, flags=re.MULTILINE)
    assert re.search(r"pip install .*-c \S*requirements\.lock \S*\.whl", dockerfile)
    assert not re.search(r"^COPY .*(templates|docs)", dockerfile, flags=re.MULTILINE)


def test_docker_image_has_the_postgres_client_programs_of_the_compose_server() -> None:
    """`safespace backup` needs pg_dump of the server's major version or newer, and `restore` loads the
    dump's script through psql, which a newer client's script can break on an older server: the same major."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    image = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["db"]["image"]
    client = re.search(r"^ARG POSTGRES_MAJOR=(\d+)$", dockerfile, flags=re.MULTILINE)
    assert client and "postgresql-client-${POSTGRES_MAJOR}" in dockerfile
    assert image == f"postgres:{client.group(1)}", f"docker-compose.yml runs {image}; the Dockerfile installs client {client.group(1)}"
