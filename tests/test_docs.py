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
