"""``parsectl migrate``: move a Parse app's data into a self-hosted database with nothing lost.

Sources (:mod:`parsectl.migrate.sources`) stream objects in storage form; the destination is any
storage adapter (its bulk paths); :mod:`parsectl.migrate.engine` plans, copies with checkpoints so an
interrupted run resumes, and :mod:`parsectl.migrate.verify` compares source and destination.
"""
