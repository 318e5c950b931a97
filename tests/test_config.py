from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings

BASE = {"DISCORD_TOKEN": "token-value", "MJ_API_BASE": "https://relay.example.com/"}


def test_reads_defaults_and_strips_trailing_slash() -> None:
    settings = Settings.from_env(BASE)
    assert settings.api_base == "https://relay.example.com"
    assert settings.api_auth_style == "bearer"
    assert settings.poll_batch_size == 100
    assert settings.database_path == Path("data/bot.sqlite3")


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"MJ_API_BASE": "https://x"}, "DISCORD_TOKEN"),
        ({"DISCORD_TOKEN": "t"}, "MJ_API_BASE"),
        ({**BASE, "MJ_AUTH_STYLE": "basic"}, "MJ_AUTH_STYLE"),
        ({**BASE, "MJ_MODE": "slow"}, "MJ_MODE"),
        ({**BASE, "POLL_INTERVAL": "soon"}, "POLL_INTERVAL"),
        ({**BASE, "MJ_API_BASE": "relay.example.com"}, "MJ_API_BASE"),
        ({**BASE, "DEV_GUILD_ID": "abc"}, "DEV_GUILD_ID"),
        ({**BASE, "SHARD_IDS": "0"}, "SHARD_COUNT"),
        ({**BASE, "SHARD_COUNT": "2", "SHARD_IDS": "2"}, "SHARD_IDS"),
        ({**BASE, "SHARD_COUNT": "2", "SHARD_IDS": "one"}, "SHARD_IDS"),
        ({**BASE, "DATABASE_URL": "mysql://db/x"}, "DATABASE_URL"),
        ({**BASE, "LEASE_SECONDS": "0.5"}, "LEASE_SECONDS"),
        # A port that is not a number: a clear line at start, not a traceback from the driver.
        ({**BASE, "DATABASE_URL": "postgresql://bot:pw-secret@db:543x/mj"}, "DATABASE_URL"),
        ({**BASE, "MJ_API_BASE": "https://bot:pw-secret@relay.example:44x"}, "MJ_API_BASE"),
        ({**BASE, "MJ_API_BASE": "bot:pw-secret@relay.example"}, "MJ_API_BASE"),
    ],
)
def test_bad_settings_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as caught:
        Settings.from_env(env)
    assert "pw-secret" not in str(caught.value)


def test_secrets_are_not_in_repr() -> None:
    settings = Settings.from_env({**BASE, "MJ_API_KEY": "sk-secret-value"})
    assert "sk-secret-value" not in repr(settings)
    assert "token-value" not in repr(settings)


def test_scaling_settings_name_the_process_and_hide_the_database_password() -> None:
    settings = Settings.from_env(
        {
            **BASE,
            "DATABASE_URL": "postgresql://bot:hunter2-password@db/mjbot",
            "SHARD_COUNT": "4",
            "SHARD_IDS": "3, 1",
        }
    )
    assert settings.database == "postgresql://bot:hunter2-password@db/mjbot"
    assert (settings.shard_count, settings.shard_ids) == (4, (1, 3))
    assert settings.lease_owner.endswith(":shards-1,3")
    assert Settings.from_env({**BASE, "INSTANCE_ID": "bot-a"}).lease_owner == "bot-a"
    assert "hunter2" not in repr(settings)
    assert Settings.from_env({**BASE, "DATABASE_PATH": "x/y.db"}).database == "x/y.db"


def test_simulator_base_is_accepted() -> None:
    assert Settings.from_env({"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator"}).uses_simulator


def test_missing_token_exits_2_with_one_clear_line(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "MJ_API_BASE": "https://x.example"}
    done = subprocess.run(
        [sys.executable, "-m", "bot"],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(Path.cwd())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "DISCORD_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


#: Settings where any text is a valid value, and why. Everything else must refuse a bad value.
FREE_TEXT = {
    "DATABASE_PATH": "any file path",
    "DATABASE_URL": "a path when it has no scheme",
    "INSTANCE_ID": "any name for this process",
}


def test_every_setting_refuses_a_bad_value_and_names_itself() -> None:
    """Issue 17 item 10: LOG_LEVEL=verbose is an error, like every other bad value."""
    source = Path(__file__).resolve().parents[1].joinpath("bot", "config.py").read_text()
    read = sorted(set(re.findall(r"""\(env, "([A-Z][A-Z0-9_]+)\"""", source)))
    assert len(read) > 20
    accepted = []
    for name in read:
        env = {"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", name: "not a valid value %%"}
        try:
            Settings.from_env(env)
        except ConfigError as exc:
            assert name in str(exc), f"{name}'s error does not name it: {exc}"
        else:
            accepted.append(name)
    unexpected = sorted(set(accepted) - set(FREE_TEXT))
    assert not unexpected, (
        f"{unexpected} accept(s) 'not a valid value %%': validate in bot/config.py (a ConfigError naming the "
        "setting), or add to FREE_TEXT in tests/test_config.py with the reason any text is valid"
    )


def test_a_pasted_key_or_token_with_a_line_break_is_refused_without_echoing_it() -> None:
    for name in ("DISCORD_TOKEN", "MJ_API_KEY"):
        env = {"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", name: "sk-secret-part\nrest"}
        with pytest.raises(ConfigError, match=name) as caught:
            Settings.from_env(env)
        assert "secret-part" not in str(caught.value)
