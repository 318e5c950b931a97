"""Logging set up once by `__main__`: text or JSON lines, and no secret in any line at any level.

Secrets reach log records from places we do not own: discord.py logs webhook URLs (which hold the
interaction token) at DEBUG, its gateway logs whole payloads (interaction tokens, modal values),
aiohttp and httpx errors name full URLs (the push secret, editor links). So redaction happens when a
record is made (a log record factory), before any handler sees it: ours, pytest's, or one an
operator adds. Patterns catch the known shapes; `register_secret` adds exact values (the bot token,
the API key, the push secret...) that have no recognisable shape.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TextIO

from bot.config import LOG_LEVELS

REDACTED = "***"
#: Loggers that are chatty or print full URLs below WARNING (httpx logs every URL at INFO).
QUIET_LOGGERS = ("discord.http", "discord.gateway", "httpx")

_SEGMENT = r"[^/\s'\"?#<>]+"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Interaction tokens in Discord URLs: /interactions/<id>/<token>/callback, /webhooks/<app>/<token>.
    (re.compile(rf"(/(?:interactions|webhooks)/\d+/){_SEGMENT}"), rf"\g<1>{REDACTED}"),
    # The push secret and the Vary (Region) editor's link keys in our own web server's paths.
    (re.compile(r"(/mj/notify/)[^\s'\"?#<>]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(/inpaint/)[^\s'\"?#<>]+"), rf"\g<1>{REDACTED}"),
    # Gateway payloads and request bodies: "token": "...", modal/form "value": "...", secrets by name.
    (
        re.compile(
            r"""(["']?(?:token|value|secret|api_key|apiKey|password|notifyHook|mj-api-secret|authorization)["']?"""
            r"""\s*[:=]\s*)(["'])(?:\\.|(?!\2).)*\2""",
            re.IGNORECASE,
        ),
        rf"\g<1>\g<2>{REDACTED}\g<2>",
    ),
    # Credentials in headers and URLs.
    (re.compile(r"\b(Bearer|Bot)\s+[A-Za-z0-9._~+/=-]{8,}"), rf"\g<1> {REDACTED}"),
    (re.compile(r"(\w+://[^:/@\s'\"]+:)[^@\s/'\"]+(@)"), rf"\g<1>{REDACTED}\g<2>"),
    # Relay keys (sk-...), Discord bot tokens and interaction tokens wherever they appear.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), f"sk-{REDACTED}"),
    (re.compile(r"\b[A-Za-z0-9_-]{23,28}\.[A-Za-z0-9_-]{6,7}\.[A-Za-z0-9_-]{27,}"), REDACTED),
    (re.compile(r"\baW50ZXJhY3Rpb246[A-Za-z0-9_-]+"), REDACTED),
)

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_installed_factory: Callable[..., logging.LogRecord] | None = None


def register_secret(value: str) -> None:
    """Never log this exact value (too short a value would redact ordinary words, so it is skipped)."""
    value = value.strip()
    if len(value) >= 8:
        with _secrets_lock:
            _secrets.add(value)


#: Every shape above contains one of these (lower case), or is a three-part token with two dots:
#: most log lines contain none, and skip the patterns (the redaction then costs a few microseconds).
_MARKERS = (
    "/interactions/", "/webhooks/", "/mj/notify/", "/inpaint/", "token", "value", "secret", "api_key",
    "apikey", "password", "notifyhook", "mj-api-secret", "authorization", "bearer", "bot ", "://", "sk-",
    "aw50zxjhy3rpb246",
)  # fmt: skip


def redact(text: str) -> str:
    """`text` with every known secret shape and registered secret replaced by ***."""
    lowered = text.lower()
    if text.count(".") >= 2 or any(marker in lowered for marker in _MARKERS):
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
    if _secrets:
        with _secrets_lock:
            known = sorted(_secrets, key=len, reverse=True)
        for secret in known:
            if secret in text:
                text = text.replace(secret, REDACTED)
    return text


def _redacting_factory(original: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format: let the handler report it as logging always has
            return record
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    return make


def install_redaction() -> None:
    """Redact every log record from now on, whatever handler it goes to (idempotent)."""
    global _installed_factory
    current = logging.getLogRecordFactory()
    if current is _installed_factory:
        return
    _installed_factory = _redacting_factory(current)
    logging.setLogRecordFactory(_installed_factory)


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line, for Docker/journald/Loki-style log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        elif record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text", *, stream: TextIO | None = None, secrets: Iterable[str] = ()) -> None:
    """One handler on the root logger (stderr unless `stream`), secrets redacted from every record."""
    for secret in secrets:
        register_secret(secret)
    install_redaction()
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level if level in LOG_LEVELS else logging.INFO)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Python's warnings (DeprecationWarning...) go through logging too, so LOG_FORMAT=json stays JSON.
    logging.captureWarnings(True)
    # discord.py warns at every start that voice needs PyNaCl and davey; this bot has no voice.
    import discord

    discord.VoiceClient.warn_nacl = False
    discord.VoiceClient.warn_dave = False
