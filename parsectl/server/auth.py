"""Who a request acts as: master, a user (issue #8 brings sessions), or nobody."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Auth:
    master: bool = False
    user_id: str | None = None
    roles: list[str] = field(default_factory=list)
    installation_id: str | None = None
    session_token: str | None = None
    session_id: str | None = None
    read_only: bool = False

    def acl_group(self) -> list[str]:
        """The ACL entities this caller matches: ``*``, its roles and its user id."""
        group = ["*", *self.roles]
        if self.user_id:
            group.append(self.user_id)
        return group


MASTER = Auth(master=True)
