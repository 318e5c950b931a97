FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install --no-cache-dir ".[postgres]" \
    && useradd --create-home --uid 10001 mjbot \
    && mkdir -p /app/data && chown mjbot /app/data

USER mjbot
VOLUME ["/app/data"]
# WEB_HOST: the optional web server (PUBLIC_URL / WEB_PORT) must listen beyond the container's loopback.
ENV DATABASE_PATH=/app/data/bot.sqlite3 WEB_HOST=0.0.0.0
EXPOSE 8080
# `docker stop` sends SIGTERM: the bot lets in-flight message edits land, then closes (bot/__main__.py).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot.healthcheck"]
CMD ["python", "-m", "bot"]
