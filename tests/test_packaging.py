"""Packaging an operator relies on: the hash-locked dependency set (CI and the Docker image install
it), the vulnerability report CI reads, the image's layers and health check, and the LICENSE."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    """{name: version} of `name==version` requirements (markers and comments dropped)."""
    found = {}
    for line in requirements:
        match = re.match(r"\s*([A-Za-z0-9._-]+)(?:\[[^\]]*\])?\s*==\s*([^\s;#\\]+)", line)
        if match:
            found[normalize(match[1])] = match[2]
    return found


def lock(name: str) -> tuple[dict[str, str], str]:
    text = ROOT.joinpath(name).read_text()
    return pins(text.splitlines()), text


def regenerate_hint(text: str) -> str:
    command = next((line.strip("# ").strip() for line in text.splitlines() if "uv pip compile" in line), "")
    return f"the lock is stale: regenerate it with `{command}` and commit it"


@pytest.mark.parametrize(
    ("lock_name", "extras"), [("requirements.lock", ("postgres",)), ("requirements-dev.lock", ("test", "postgres"))]
)
def test_the_lock_pins_exactly_what_pyproject_asks_for_with_hashes(lock_name: str, extras: tuple[str, ...]) -> None:
    locked, text = lock(lock_name)
    project = PYPROJECT["project"]
    wanted = pins(project["dependencies"])
    for extra in extras:
        wanted |= pins(project["optional-dependencies"][extra])
    assert len(wanted) == len(project["dependencies"]) + sum(
        len(project["optional-dependencies"][e]) for e in extras
    ), "every dependency in pyproject.toml is pinned exactly (name==version)"
    differing = {name: (version, locked.get(name)) for name, version in wanted.items() if locked.get(name) != version}
    assert not differing, f"{regenerate_hint(text)}; pyproject vs lock: {differing}"
    # Every locked requirement carries at least one sha256 (pip --require-hashes refuses otherwise).
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2])
    unhashed = [entry.split()[0] for entry in entries if "==" in entry and "--hash=sha256:" not in entry]
    assert not unhashed, f"{regenerate_hint(text)}; no hash for {unhashed}"


def test_the_runtime_lock_has_no_test_tools() -> None:
    locked, _ = lock("requirements.lock")
    assert not {"pytest", "ruff", "pytest-asyncio"} & set(locked)


def test_the_test_extra_does_not_repeat_a_runtime_dependency() -> None:
    runtime = {normalize(re.split(r"[=<>!~\[; ]", r)[0]) for r in PYPROJECT["project"]["dependencies"]}
    test = {normalize(re.split(r"[=<>!~\[; ]", r)[0]) for r in PYPROJECT["project"]["optional-dependencies"]["test"]}
    assert runtime & test == set()


def test_ci_and_the_readme_install_from_the_lock() -> None:
    ci = ROOT.joinpath(".ci", "run").read_text()
    readme = ROOT.joinpath("README.md").read_text()
    for step in ("pip install --require-hashes -r requirements-dev.lock", "pip install --no-deps -e ."):
        assert step in ci and step in readme, step
    assert "pip-audit" in ci


def write_report(tmp_path: Path, dependencies: list[dict[str, object]]) -> Path:
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"dependencies": dependencies, "fixes": []}))
    return path


def audit(report: Path) -> subprocess.CompletedProcess[str]:
    script = ROOT / ".ci" / "audit_report.py"
    return subprocess.run([sys.executable, str(script), str(report)], capture_output=True, text=True, timeout=60)


def test_ci_fails_on_a_known_vulnerability(tmp_path: Path) -> None:
    vulnerable = {"name": "aiohttp", "version": "3.9.0", "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.9.4"]}]}
    done = audit(write_report(tmp_path, [vulnerable, {"name": "httpx", "version": "0.28.1", "vulns": []}]))
    assert done.returncode == 1
    assert "VULNERABLE aiohttp 3.9.0: GHSA-xxxx (fixed in 3.9.4)" in done.stdout


def test_ci_says_loudly_but_does_not_fail_when_the_database_cannot_be_reached(tmp_path: Path) -> None:
    skipped = {"name": "httpx", "skip_reason": "Dependency not found on PyPI and could not be audited: httpx (0.28.1)"}
    done = audit(write_report(tmp_path, [skipped]))
    assert done.returncode == 0
    assert "0 of 1 locked packages audited" in done.stdout and "WARNING: 1 package(s) NOT audited" in done.stdout
    missing = audit(tmp_path / "nothing.json")
    assert missing.returncode == 0 and "NOT checked" in missing.stdout


def test_the_image_installs_locked_dependencies_in_a_layer_of_their_own() -> None:
    dockerfile = ROOT.joinpath("Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines()]
    lock_copy = lines.index("COPY requirements.lock ./")
    first_code = min(i for i, line in enumerate(lines) if line.startswith("COPY bot") or line.startswith("COPY cogs"))
    install = next(i for i, line in enumerate(lines) if "--require-hashes -r requirements.lock" in line)
    assert lock_copy < install < first_code, "dependencies are installed before any code is copied"
    assert re.search(r"^ENV .*\bWEB_PORT=8080\b", dockerfile, re.MULTILINE), "the health check needs a web server"
    ignored = ROOT.joinpath(".dockerignore").read_text().split()
    assert "**/__pycache__" in ignored and ".env" in ignored
    for compose in ("compose.yaml", "compose.scale.yaml"):
        assert "WEB_PORT: ${WEB_PORT:-8080}" in ROOT.joinpath(compose).read_text(), compose


def test_license_file_matches_pyproject() -> None:
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert ROOT.joinpath("LICENSE").read_text().startswith("MIT License")
    setuptools = next(r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    assert setuptools == "setuptools>=77"  # the first release that reads an SPDX `license` string
