"""Provision Percona Server for MongoDB nodes over SSH and join them to a replica set (plan, then apply).

- ``playbook``: YAML playbooks (``playbooks/`` at the repository's top level) built from a small vocabulary of
  idempotent steps, validated strictly before anything runs;
- ``inventory``: the hosts, how to reach them (parsectl.ssh) and their replica-set roles;
- ``steps``: the node steps (gather_facts, os_tuning, package_repository, packages, data_dir, directories,
  keyfile, mongod_conf, template, service, wait_for_port);
- ``replset``: replica-set command documents and operations (initiate, add through the primary, wait for
  initial sync, oplog window, try/promote/revert, status);
- ``engine``: plan/apply across hosts (node steps in parallel, then the replica-set phase in order).

See docs/provision.md.
"""
