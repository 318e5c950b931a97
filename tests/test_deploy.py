"""Running as a service: structured logs, the container files, and every setting documented."""

from __future__ import annotations

import io
import json
import logging
import re
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from bot.__main__ import setup_logging

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    quiet = {name: logging.getLogger(name).level for name in ("discord.http", "discord.gateway", "httpx")}
    yield
    logging.captureWarnings(False)  # setup_logging routes warnings to logging; pytest records its own
    root.handlers[:], root.level = saved
    for name, level in quiet.items():
        logging.getLogger(name).setLevel(level)


def test_json_logs_are_one_object_per_line_with_level_logger_and_exception(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    logger = logging.getLogger("bot.test")
    logger.debug("not shown at INFO")
    logger.info("task %s accepted", "1748339100123456")
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("cycle failed")
    lines = out.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(entries) == 2
    assert entries[0]["level"] == "INFO" and entries[0]["logger"] == "bot.test"
    assert entries[0]["message"] == "task 1748339100123456 accepted" and entries[0]["time"].endswith("+00:00")
    assert entries[1]["level"] == "ERROR" and "ValueError: boom" in entries[1]["exception"]


def test_python_warnings_are_json_lines_too(restore_logging: None) -> None:
    import warnings

    out = io.StringIO()
    logging.captureWarnings(False)  # an earlier setup_logging in this process may hold pytest's recorder
    setup_logging("INFO", "json", stream=out)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("an old way of doing it", DeprecationWarning, stacklevel=1)
    [entry] = [json.loads(line) for line in out.getvalue().splitlines()]
    assert entry["level"] == "WARNING" and entry["logger"] == "py.warnings" and "an old way" in entry["message"]


def test_text_logs_stay_the_default(restore_logging: None) -> None:
    out = io.StringIO()
    setup_logging("WARNING", stream=out)
    logging.getLogger("bot.test").warning("careful")
    line = out.getvalue().strip()
    assert line.endswith("WARNING  bot.test: careful") and not line.startswith("{")


def test_every_setting_the_bot_reads_is_in_env_example() -> None:
    read = set(re.findall(r"""\(env, "([A-Z][A-Z0-9_]+)\"""", ROOT.joinpath("bot", "config.py").read_text()))
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]+)=", ROOT.joinpath(".env.example").read_text(), re.MULTILINE))
    assert {"PUBLIC_URL", "WEB_PORT", "LOG_FORMAT", "SIMULATOR_STEP_SECONDS"} <= read
    assert read - documented == set()


def test_container_runs_unprivileged_keeps_data_and_checks_health() -> None:
    dockerfile = ROOT.joinpath("Dockerfile").read_text()
    assert re.search(r"^USER (?!root\b)\w+", dockerfile, re.MULTILINE)
    assert 'VOLUME ["/app/data"]' in dockerfile and "STOPSIGNAL SIGTERM" in dockerfile
    compose = ROOT.joinpath("compose.yaml").read_text()
    assert re.search(r"healthcheck:\s+test: \[\"CMD\", \"python\", \"-m\", \"bot.healthcheck\"\]", compose)
    assert "bot-data:/app/data" in compose and "stop_grace_period" in compose


def test_web_files_ship_with_the_package() -> None:
    package_data = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in ("inpaint.html", "inpaint.js", "inpaint.css"):
        assert resources.files("bot.web.static").joinpath(name).is_file()
        assert any(Path(f"static/{name}").match(pattern) for pattern in package_data["bot.web"]), name
    assert any(Path("migrations/0001_initial.sql").match(pattern) for pattern in package_data["bot.storage"])


def test_scale_out_compose_runs_one_process_per_shard_on_postgres() -> None:
    compose = ROOT.joinpath("compose.scale.yaml").read_text()
    bots = re.findall(r"^  (bot-\d+):\n((?:    .*\n|\n)+?)(?=^  \S|^\S|\Z)", compose, re.MULTILINE)
    shard_count = int(re.search(r'SHARD_COUNT: "(\d+)"', compose).group(1))  # type: ignore[union-attr]
    shard_ids = sorted(int(re.search(r'SHARD_IDS: "(\d+)"', body).group(1)) for _, body in bots)  # type: ignore[union-attr]
    instances = {re.search(r"INSTANCE_ID: (\S+)", body).group(1) for _, body in bots}  # type: ignore[union-attr]
    assert len(bots) >= 2 and shard_ids == list(range(shard_count)) and len(instances) == len(bots)
    assert "DATABASE_URL: postgresql://" in compose and "service_healthy" in compose
    # The image can reach PostgreSQL: it installs requirements.lock, which holds the postgres extra.
    assert "-r requirements.lock" in ROOT.joinpath("Dockerfile").read_text()
    assert re.search(r"^asyncpg==", ROOT.joinpath("requirements.lock").read_text(), re.MULTILINE)
