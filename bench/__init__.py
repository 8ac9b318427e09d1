"""Load benchmark: parsectl (embedded SQLite) against node parse-server 9.10 on PostgreSQL. See bench/README.md."""
