"""The command line (issue 17 items 6-10): --help/--version, --env-file, check, invite, backup, and
start-up failures that are one line and an exit code.

Subprocess tests run `python -m bot` (or tests.bot_process, the same entry point pointed at a fake
Discord) in a temporary folder with only the environment they give it.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bot import __version__, cli
from bot.__main__ import secrets_of
from bot.config import ConfigError, Settings
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import API_KEY, BotRunner
from tests.fakes.discord import FakeDiscord
from tests.pg import Backend, backend_fixture, postgres_server_fixture  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[1]
VALID_ENV = "DISCORD_TOKEN=MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.abcdefghijklmnopqrstuvwxyz0123\nMJ_API_BASE=simulator\n"


def dead_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, module: str = "bot"
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT), "HOME": str(cwd)}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=90,
    )


# ---- --help, --version, --env-file --------------------------------------------------------------


def test_help_and_version_answer_without_reading_settings_or_touching_the_database(tmp_path: Path) -> None:
    tmp_path.joinpath(".env").write_text("LOG_LEVEL=verbose\nDATABASE_PATH=data/bot.sqlite3\n")  # invalid on purpose
    helped = run(["--help"], tmp_path)
    assert helped.returncode == 0, helped.stderr
    for command in ("check", "invite", "backup", "--env-file", "--version"):
        assert command in helped.stdout
    version = run(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"mj-bot {__version__}"
    assert not tmp_path.joinpath("data").exists()


def test_version_is_the_packages(tmp_path: Path) -> None:
    import tomllib

    project = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text())
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "bot.__version__"}


def test_env_file_from_another_folder_and_a_database_path_relative_to_it(tmp_path: Path) -> None:
    config = tmp_path / "etc"
    config.mkdir()
    config.joinpath("bot.env").write_text(VALID_ENV + "DATABASE_PATH=data/bot.sqlite3\n")
    config.joinpath("data").mkdir()
    with sqlite3.connect(config / "data" / "bot.sqlite3") as db:
        db.execute("CREATE TABLE marker (x)")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["--env-file", str(config / "bot.env"), "backup", "copy.sqlite3"], elsewhere)
    assert done.returncode == 0, done.stderr
    with sqlite3.connect(elsewhere / "copy.sqlite3") as copy:
        assert copy.execute("SELECT name FROM sqlite_master").fetchall() == [("marker",)]
    assert not elsewhere.joinpath("data").exists()

    missing = run(["--env-file", "nope.env", "check"], elsewhere)
    assert missing.returncode == 2 and "nope.env" in missing.stderr and "Traceback" not in missing.stderr


def test_dot_env_in_the_current_folder_is_read(tmp_path: Path) -> None:
    tmp_path.joinpath(".env").write_text(VALID_ENV)
    done = run(["invite"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "client_id=123456789012345678" in done.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [({"LOG_LEVEL": "verbose"}, "LOG_LEVEL"), ({"SYNC_COMMANDS": "maybe"}, "SYNC_COMMANDS")],
)
def test_every_bad_value_is_an_error(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", **env})


# ---- invite and backup --------------------------------------------------------------------------


def test_invite_has_the_exact_permissions_including_threads() -> None:
    url, permissions = cli.invite_lines("MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.abcdefghijklmnopqrstuvwxyz0123")
    # View Channels 1024 + Send Messages 2048 + Embed Links 16384 + Attach Files 32768
    # + Read Message History 65536 + Send Messages in Threads 2**38
    expected = 1024 + 2048 + 16384 + 32768 + 65536 + 2**38
    assert url == (
        "https://discord.com/oauth2/authorize?client_id=123456789012345678"
        f"&scope=bot+applications.commands&permissions={expected}"
    )
    assert permissions.startswith(f"permissions {expected}:") and "Send Messages in Threads" in permissions
    with pytest.raises(ConfigError, match="--client-id"):
        cli.invite_lines("not-a-token")
    assert cli.invite_lines("not-a-token", client_id=42)[0].startswith(
        "https://discord.com/oauth2/authorize?client_id=42&"
    )


async def test_backup_copies_a_live_wal_database_consistently(tmp_path: Path) -> None:
    from bot.storage.factory import open_store

    settings = Settings.from_env({"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator"}, base_dir=tmp_path)
    store = await open_store(settings.database)
    try:
        await store.set_meta("marker", "written while the bot runs")
        lines = cli.backup(settings, tmp_path / "backup.sqlite3")  # the bot still holds it open (WAL)
    finally:
        await store.close()
    assert lines[0].startswith("backed up ")
    with sqlite3.connect(tmp_path / "backup.sqlite3") as copy:
        assert copy.execute("SELECT value FROM meta WHERE key = 'marker'").fetchone() == ("written while the bot runs",)
    assert (tmp_path / "backup.sqlite3").stat().st_mode & 0o777 == 0o600
    with pytest.raises(cli.StartupFailure, match="already exists"):
        cli.backup(settings, tmp_path / "backup.sqlite3")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(cli.StartupFailure, match="cannot back up"):  # a folder that cannot be made
        cli.backup(settings, tmp_path / "a-file" / "backup.sqlite3")


def test_backup_of_postgresql_prints_the_pg_dump_line_without_the_password() -> None:
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", "DATABASE_URL": "postgresql://mjbot:pw-secret@db:5433/mj"}
    )
    lines = cli.backup(settings, Path("/backups/mj.dump"))
    assert lines[-1] == "pg_dump --format=custom --file=/backups/mj.dump --host=db --port=5433 --username=mjbot mj"
    assert "pw-secret" not in "\n".join(lines)


async def test_a_password_in_mj_api_base_is_never_printed() -> None:
    """httpx sends a URL's user:password as Basic auth, so an operator may put one in MJ_API_BASE; the
    start-up summary (a log line) and `check`'s verdict name only the host."""
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "MJ_API_BASE": f"http://mjbot:pw-secret@127.0.0.1:{dead_port()}"}
    )
    summary = cli.startup_summary(settings)
    verdict = await cli.probe_api(settings, within=5)
    assert "127.0.0.1" in summary and "127.0.0.1" in verdict.detail and not verdict.ok
    assert "pw-secret" not in summary + verdict.detail and "mjbot" not in summary + verdict.detail
    assert "pw-secret" in secrets_of(settings)  # and redacted from every log line, whatever logs it


# ---- check --------------------------------------------------------------------------------------


async def test_check_against_the_simulator_and_discord_passes_every_part(
    settings: Settings, discord_fake: FakeDiscord
) -> None:
    lines: list[str] = []
    assert await cli.check(settings, lines.append) == cli.EXIT_OK
    assert [line.split(":")[0] for line in lines] == [
        "ok   configuration",
        "ok   Discord",
        "ok   API",
        "ok   database",
        "ok   stored API keys",
        "ok   web server",
    ]
    assert "bearer" in lines[2] and "accepted the key" in lines[2]
    assert API_KEY not in "\n".join(lines)
    assert not settings.database_path.exists()  # check reads; it creates nothing


async def test_check_says_which_auth_style_the_server_wants(settings: Settings, discord_fake: FakeDiscord) -> None:
    async with SimulatedProxy(flavor="relay", api_key=API_KEY, auth_style="mj-api-secret") as proxy:
        lines: list[str] = []
        wrong_style = Settings(**{**_fields(settings), "api_base": proxy.base_url, "api_auth_style": "bearer"})
        assert await cli.check(wrong_style, lines.append) == cli.EXIT_FAILED
    api = next(line for line in lines if " API:" in line)
    assert api.startswith("FAIL") and "set MJ_AUTH_STYLE=mj-api-secret" in api


async def test_check_against_a_dead_port_fails_in_one_line(settings: Settings, discord_fake: FakeDiscord) -> None:
    lines: list[str] = []
    dead = Settings(**{**_fields(settings), "api_base": f"http://127.0.0.1:{dead_port()}"})
    assert await cli.check(dead, lines.append) == cli.EXIT_FAILED
    api = next(line for line in lines if " API:" in line)
    assert api.startswith("FAIL API: 127.0.0.1:") and "could not connect" in api
    assert len(lines) == 6 and all("\n" not in line for line in lines)


def _fields(settings: Settings) -> dict[str, object]:
    return {name: getattr(settings, name) for name in Settings.__dataclass_fields__}


# ---- start-up failures --------------------------------------------------------------------------


def fake_discord_env(port: int) -> dict[str, str]:
    return {
        "FAKE_DISCORD_API": f"http://127.0.0.1:{port}/api/v10",
        "FAKE_DISCORD_GATEWAY": f"ws://127.0.0.1:{port}/gateway",
        "DISCORD_TOKEN": "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.abcdefghijklmnopqrstuvwxyz0123",
    }


def test_discord_unreachable_is_one_json_line_after_a_start_up_summary_and_warnings(tmp_path: Path) -> None:
    api_port = dead_port()
    env = {
        **fake_discord_env(dead_port()),
        "MJ_API_BASE": f"http://127.0.0.1:{api_port}",
        "MJ_API_KEY": "sk-must-not-appear-0123456789",
        "PUBLIC_URL": "http://bot.example.com",
        "LOG_FORMAT": "json",
        "DATABASE_PATH": "data/bot.sqlite3",
    }
    done = run([], tmp_path, env, module="tests.bot_process")
    assert done.returncode == cli.EXIT_DISCORD, done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # every line is JSON
    critical = [e for e in entries if e["level"] == "CRITICAL"]
    assert len(critical) == 1 and critical[0]["message"].startswith("Cannot reach Discord")
    assert "Traceback" not in done.stderr and "sk-must-not-appear" not in done.stderr
    assert "PyNaCl" not in done.stderr and "davey" not in done.stderr  # no voice here: no voice warnings
    messages = [e["message"] for e in entries]
    summary = next(m for m in messages if m.startswith("Starting:"))
    assert f"API 127.0.0.1:{api_port} (bearer auth, a key)" in summary
    assert "database SQLite " in summary and "shards all" in summary and "web server 127.0.0.1:8080" in summary
    warnings = [e["message"] for e in entries if e["level"] == "WARNING"]
    assert any(m.startswith("PUBLIC_URL is http://bot.example.com") for m in warnings)
    assert any(m.startswith(f"API: 127.0.0.1:{api_port} could not be used") for m in warnings)


@pytest.mark.parametrize("backend", ["postgresql", "sqlite folder"])
def test_database_unreachable_is_one_line(tmp_path: Path, backend: str) -> None:
    if backend == "postgresql":
        pytest.importorskip("asyncpg")
        database = {"DATABASE_URL": f"postgresql://mjbot:pw-hunter2@127.0.0.1:{dead_port()}/mjbot"}
    else:
        tmp_path.joinpath("a-file").write_text("not a folder")
        database = {"DATABASE_PATH": str(tmp_path / "a-file" / "bot.sqlite3")}
    env = {**fake_discord_env(dead_port()), "MJ_API_BASE": "simulator", "LOG_LEVEL": "WARNING", **database}
    done = run([], tmp_path, env, module="tests.bot_process")
    assert done.returncode == cli.EXIT_DATABASE, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "CRITICAL" in lines[0] and "database" in lines[0].lower() and "pw-hunter2" not in lines[0]


def test_no_migration_lock_file_is_left_beside_the_database(tmp_path: Path) -> None:
    import asyncio

    from bot.storage.factory import open_store

    async def open_and_close() -> None:
        await (await open_store(tmp_path / "bot.sqlite3")).close()

    asyncio.run(open_and_close())
    assert sorted(p.name for p in tmp_path.iterdir() if "lock" in p.name) == []


# ---- remove-commands ----------------------------------------------------------------------------


async def test_remove_commands_clears_them_and_the_next_start_registers_them_again(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    await runner.start()
    assert discord_fake.command("imagine", guild=discord_fake.guild) is not None
    await runner.stop()

    lines = await cli.remove_commands(runner.settings)

    assert lines == [
        "removed the global slash commands",
        f"removed the slash commands of server {discord_fake.guild.id} (DEV_GUILD_ID)",
    ]
    assert discord_fake.commands == []
    await runner.start()  # SYNC_COMMANDS=true: the last sync was forgotten, so it syncs again
    assert discord_fake.command("imagine", guild=discord_fake.guild) is not None


def test_a_configuration_error_is_one_json_line_with_log_format_json(tmp_path: Path) -> None:
    tmp_path.joinpath("empty.env").write_text("")  # not a developer's .env beside the code
    done = run(["--env-file", "empty.env"], tmp_path, {"MJ_API_BASE": "simulator", "LOG_FORMAT": "json"})
    assert done.returncode == cli.EXIT_CONFIG
    [line] = done.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "CRITICAL" and "DISCORD_TOKEN" in entry["message"] and entry["time"].endswith("+00:00")


def file_bytes(path: str) -> bytes:
    return Path(path).read_bytes() if Path(path).is_file() else b""


async def test_check_says_whether_the_stored_api_keys_decrypt_without_changing_the_database(backend: Backend) -> None:
    from bot.models import NewApiKey
    from bot.upstream.keys import KeyCipher

    right, wrong = KeyCipher.generate(), KeyCipher.generate()
    base = {"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", "DATABASE_URL": backend.target}
    store = await backend.open()
    token = KeyCipher(right).encrypt("sk-stored-0123456789")
    await store.insert_api_key(NewApiKey(None, "relay", "https://relay.example", "bearer", "", 0, token, "6789", 1))
    await backend.close_all()
    before = file_bytes(backend.target)  # SQLite: the file itself must not change

    verdicts = {}
    for name, key in (("right", right), ("rotating", f"{wrong},{right}"), ("wrong", wrong), ("unset", "")):
        env = {**base, "KEY_ENCRYPTION_KEY": key} if key else base
        verdicts[name] = await cli.probe_stored_keys(Settings.from_env(env))

    assert verdicts["right"].ok and verdicts["right"].detail == "1 stored, all decrypt with KEY_ENCRYPTION_KEY"
    assert verdicts["rotating"].ok
    assert not verdicts["wrong"].ok and "1 of 1 cannot be decrypted" in verdicts["wrong"].detail
    assert not verdicts["unset"].ok and "KEY_ENCRYPTION_KEY is not set" in verdicts["unset"].detail
    assert file_bytes(backend.target) == before


def test_check_says_when_the_web_port_is_taken(settings: Settings) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = Settings(**{**_fields(settings), "web_port": port})
        verdict = cli.probe_web(busy)
    assert not verdict.ok and verdict.line().startswith(f"FAIL web server: cannot listen on 127.0.0.1:{port}")
    assert verdict.detail.endswith("(is the bot already running?)")
    free = cli.probe_web(Settings(**{**_fields(settings), "web_port": port, "public_url": "http://bot.example"}))
    assert free.ok and "WARNING: PUBLIC_URL is http://" in free.detail
