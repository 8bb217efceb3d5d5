"""xpgrad nn."""
