"""MongoDB operations: pure generators (mongod.conf, checks) kept apart from effects (host facts over SSH).

``conf`` turns inputs into a config document with a reason for every value and checks existing files;
``facts`` reads host resources (local /proc, SSH) and measures a running server's oplog write rate;
``render`` fills the templates in the repository's ``templates/`` folder.
"""

from parsectl.mongo_ops.conf import (
    ConfError,
    Finding,
    Generated,
    Inputs,
    Setting,
    Version,
    check,
    generate,
)

__all__ = ["ConfError", "Finding", "Generated", "Inputs", "Setting", "Version", "check", "generate"]
