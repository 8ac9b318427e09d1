"""Backups: strata for MongoRocks nodes, SQLite online backups for the embedded store."""
