"""mj-discord-bot: a Discord bot in front of a midjourney-proxy compatible API."""

__version__ = "0.1.0"
