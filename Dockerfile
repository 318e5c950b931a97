FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first, from the lock (exact versions, every file's sha256): this layer and the user
# below are rebuilt only when requirements.lock changes, not on every code change.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock \
    && useradd --create-home --uid 10001 mjbot \
    && mkdir -p /app/data && chown mjbot /app/data

# The code runs from /app (`python -m bot`), so it needs no install step of its own.
COPY LICENSE ./
COPY bot ./bot
COPY cogs ./cogs

USER mjbot
VOLUME ["/app/data"]
# WEB_HOST: the web server must listen beyond the container's loopback. WEB_PORT: always on, so the
# health check below asks the bot's /health (gateway and database), not just "is a process there".
ENV DATABASE_PATH=/app/data/bot.sqlite3 WEB_HOST=0.0.0.0 WEB_PORT=8080
EXPOSE 8080
# `docker stop` sends SIGTERM: the bot lets in-flight message edits land, then closes (bot/__main__.py).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["python", "-m", "bot.healthcheck"]
CMD ["python", "-m", "bot"]
