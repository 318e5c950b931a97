FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 mjbot \
    && mkdir -p /app/data && chown mjbot /app/data

USER mjbot
VOLUME ["/app/data"]
ENV DATABASE_PATH=/app/data/bot.sqlite3
CMD ["python", "-m", "bot"]
