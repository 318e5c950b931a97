"""Files the bot's web server serves (the Vary (Region) editor)."""
