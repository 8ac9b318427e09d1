"""Migration sources: a hosted Parse export (:mod:`.export`), a live Parse Server over REST
(:mod:`.rest`) and a database in parse-server's format (:mod:`.database`)."""
