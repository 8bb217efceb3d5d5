"""xpgrad examples."""
