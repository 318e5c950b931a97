"""Persistent state. Map of this room:

- protocols.py: what the bot may ask of storage, one protocol per concern (`Storage` is all of them);
- factory.py: `open_store` picks SQLite or PostgreSQL from DATABASE_URL;
- common.py: what both backends share that is not SQL (columns callers may write, the migration loader);
- sqlite/ and postgres/: the two backends, each one section per concern on one base (connection, retries);
- migrations/: numbered SQL scripts, SQLite's here and PostgreSQL's twins in migrations/postgres/.

The stored values themselves (TaskRecord, NewApiKey, UserPrefs) live in bot/models.py and
bot/preferences.py. Storage imports no config, no Discord and nothing above it.
"""
