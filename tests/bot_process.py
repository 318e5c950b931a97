"""`python -m tests.bot_process`: the real bot, in its own OS process, against a fake Discord.

Runs the bot's normal entry point (`bot.__main__.main`: settings from the environment, logging,
SIGTERM handling) after doing in this process exactly what `tests.fakes.discord.FakeDiscord.start`
does in the test process: re-point discord.py's REST base and gateway URL. Everything else comes
from the environment the harness (tests/procs.py) gives it:

- FAKE_DISCORD_API      the fake's REST base, e.g. http://127.0.0.1:PORT/api/v10 (FakeDiscord.api_base)
- FAKE_DISCORD_GATEWAY  the fake's gateway, e.g. ws://127.0.0.1:PORT/gateway (FakeDiscord.gateway_url)
- the bot's own settings: DISCORD_TOKEN, MJ_API_BASE, MJ_API_KEY, DATABASE_URL, SHARD_COUNT,
  SHARD_IDS, INSTANCE_ID, LEASE_SECONDS, POLL_INTERVAL, DEV_GUILD_ID, ... (bot/config.py);
  DISCORD_CHANNEL_WINDOW compresses the tracker's per-channel write window as the in-process e2e
  tests do (tests/conftest.py)

Test-only knob (never read by the bot itself):
- BOT_PROCESS_NAME      tags every REST request's User-Agent with `instance/<name>` (default:
                        INSTANCE_ID), so the fake's request log tells which process sent it.

No `.env` is read: a process gets only the settings its test gave it.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any

import discord.gateway
import discord.http
import yarl

USER_AGENT_TAG = "instance/"


def point_at_fake(api_base: str, gateway_url: str) -> None:
    """What FakeDiscord.start does in its own process (it cannot reach into this one)."""
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def tag_user_agent(instance: str) -> None:
    """Append `instance/<name>` to the User-Agent of every REST request this process sends."""
    original = discord.http.HTTPClient.__init__

    @functools.wraps(original)
    def init(self: discord.http.HTTPClient, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.user_agent = f"{self.user_agent} {USER_AGENT_TAG}{instance}"

    discord.http.HTTPClient.__init__ = init  # type: ignore[method-assign]

    # Interaction-token requests (discord.py's webhook adapter) go through the same session without a
    # User-Agent of their own: the session's default carries the tag to them.
    login = discord.http.HTTPClient.static_login

    @functools.wraps(login)
    async def static_login(self: discord.http.HTTPClient, *args: Any, **kwargs: Any) -> Any:
        data = await login(self, *args, **kwargs)
        self._HTTPClient__session._default_headers["User-Agent"] = self.user_agent  # type: ignore[attr-defined]
        return data

    discord.http.HTTPClient.static_login = static_login  # type: ignore[method-assign]


def main() -> int:
    api_base = os.environ.get("FAKE_DISCORD_API", "").strip()
    gateway_url = os.environ.get("FAKE_DISCORD_GATEWAY", "").strip()
    if not api_base or not gateway_url:
        print("tests.bot_process needs FAKE_DISCORD_API and FAKE_DISCORD_GATEWAY", file=sys.stderr)
        return 2
    point_at_fake(api_base, gateway_url)
    name = os.environ.get("BOT_PROCESS_NAME", "").strip() or os.environ.get("INSTANCE_ID", "").strip()
    tag_user_agent(name or f"pid-{os.getpid()}")

    import bot.__main__ as entry

    entry.load_dotenv = lambda *args, **kwargs: False  # type: ignore[assignment]  # env only, no .env
    return entry.main()


if __name__ == "__main__":
    sys.exit(main())
