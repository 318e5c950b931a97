"""`python -m bot.healthcheck`: the container's health probe (compose.yaml), exit 0 when healthy.

Standard library only, since it runs every 30 s next to the bot. It asks the bot's own /health
(bot/web/server.py), which reports the gateway and the database. Without a web server (no WEB_PORT or
PUBLIC_URL) there is nothing to ask, so it reports healthy and Docker's restart policy alone
covers a crash.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request

DEFAULT_PORT = "8080"  # bot/web/server.py's port when only PUBLIC_URL is set


def main() -> int:
    port = os.environ.get("WEB_PORT", "").strip() or (DEFAULT_PORT if os.environ.get("PUBLIC_URL") else "")
    if not port:
        return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            body = json.load(answer)
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: /health answered HTTP {exc.code}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if body.get("status") != "ok":
        print(f"unhealthy: {body}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
