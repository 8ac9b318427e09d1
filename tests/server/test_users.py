"""Users, sessions, roles, ACLs and class-level permissions, as parse-server 9.10 enforces them."""

from __future__ import annotations

import json

from parsectl.model import codec, query
from tests.server.conftest import Client


def signup(client: Client, username: str, password: str = "pw-1", **fields: object) -> dict:
    r = client.request("POST", "/users", json={"username": username, "password": password, **fields},
                       headers={"X-Parse-Installation-Id": f"inst-{username}"})
    assert r.status_code == 201, r.text
    return r.json()


def as_user(token: str) -> dict[str, str]:
    return {"X-Parse-Session-Token": token}


def test_signup_login_me_logout(client: Client) -> None:
    r = client.request("POST", "/users", json={"username": "cooldude6", "password": "p_n7!-e8", "phone": "415"})
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"objectId", "createdAt", "sessionToken"}
    assert body["sessionToken"].startswith("r:") and len(body["sessionToken"]) == 34
    assert r.headers["location"].endswith(f"/users/{body['objectId']}")
    r = client.request("GET", "/login", params={"username": "cooldude6", "password": "p_n7!-e8"})
    assert r.status_code == 200
    user = r.json()
    assert user["username"] == "cooldude6" and user["phone"] == "415"
    assert user["ACL"] == {body["objectId"]: {"read": True, "write": True}}
    assert "password" not in user and "_hashed_password" not in user
    token = user["sessionToken"]
    me = client.request("GET", "/users/me", headers=as_user(token)).json()
    assert me["objectId"] == body["objectId"] and me["sessionToken"] == token
    assert client.request("POST", "/logout", headers=as_user(token)).json() == {}
    r = client.request("GET", "/users/me", headers=as_user(token))
    assert (r.status_code, r.json()) == (400, {"code": 209, "error": "Invalid session token"})


def test_login_errors(client: Client) -> None:
    signup(client, "alice")
    cases = [({"username": "alice", "password": "nope"}, 404, 101, "Invalid username/password."),
             ({"username": "nobody", "password": "x"}, 404, 101, "Invalid username/password."),
             ({"password": "x"}, 400, 200, "username/email is required."),
             ({"username": "alice"}, 400, 201, "password is required.")]
    for body, status, code, message in cases:
        r = client.request("POST", "/login", json=body)
        assert (r.status_code, r.json()) == (status, {"code": code, "error": message}), body


def test_signup_errors(client: Client) -> None:
    signup(client, "Bob", email="bob@example.com")
    cases = [({"username": "bob", "password": "x"}, 202, "Account already exists for this username."),
             ({"username": "b2", "password": "x", "email": "BOB@example.com"}, 203,
              "Account already exists for this email address."),
             ({"username": "b3", "password": "x", "email": "not-an-email"}, 125, "Email address format is invalid."),
             ({"password": "x"}, 200, "bad or missing username"),
             ({"username": "b4"}, 201, "password is required")]
    for body, code, message in cases:
        r = client.request("POST", "/users", json=body)
        assert (r.status_code, r.json()) == (400, {"code": code, "error": message}), body


def test_users_cannot_read_or_change_each_other(client: Client) -> None:
    a = signup(client, "ann", email="ann@example.com")
    b = signup(client, "ben", email="ben@example.com")
    r = client.request("GET", f"/users/{a['objectId']}", headers=as_user(b["sessionToken"]))
    assert r.status_code == 404  # private users: only the user (and the master key) can read the record
    r = client.request("PUT", f"/users/{a['objectId']}", json={"phone": "1"}, headers=as_user(b["sessionToken"]))
    assert (r.status_code, r.json()["code"]) == (400, 206)
    r = client.request("PUT", f"/users/{a['objectId']}", json={"phone": "1"})
    assert (r.status_code, r.json()) == (400, {"code": 206, "error": f"Cannot modify user {a['objectId']}."})
    r = client.request("DELETE", f"/users/{a['objectId']}")
    assert (r.status_code, r.json()) == (400, {"code": 206, "error": "Insufficient auth to delete user"})
    r = client.request("PUT", f"/users/{a['objectId']}", json={"emailVerified": True},
                       headers=as_user(a["sessionToken"]))
    assert (r.status_code, r.json()["code"]) == (400, 119)
    own = client.request("GET", f"/users/{a['objectId']}", headers=as_user(a["sessionToken"])).json()
    assert own["email"] == "ann@example.com" and own["sessionToken"] == a["sessionToken"]


def test_email_is_protected_from_other_users(client: Client) -> None:
    a = signup(client, "pub", email="pub@example.com")
    client.request("PUT", f"/users/{a['objectId']}", json={"ACL": {"*": {"read": True}}}, master=True)
    b = signup(client, "other")
    seen = client.request("GET", f"/users/{a['objectId']}", headers=as_user(b["sessionToken"])).json()
    assert seen["username"] == "pub" and "email" not in seen
    r = client.request("GET", "/users", params={"where": json.dumps({"email": "pub@example.com"})},
                       headers=as_user(b["sessionToken"]))
    assert (r.status_code, r.json()["code"]) == (400, 119)
    assert client.request("GET", f"/users/{a['objectId']}", master=True).json()["email"] == "pub@example.com"


def test_password_change_revokes_sessions_and_issues_a_new_one(client: Client) -> None:
    a = signup(client, "carl")
    r = client.request("PUT", f"/users/{a['objectId']}", json={"password": "new-pw"},
                       headers=as_user(a["sessionToken"]))
    assert r.status_code == 200 and r.json()["sessionToken"] != a["sessionToken"]
    assert client.request("GET", "/users/me", headers=as_user(a["sessionToken"])).status_code == 400
    assert client.request("GET", "/users/me", headers=as_user(r.json()["sessionToken"])).status_code == 200
    assert client.request("POST", "/login", json={"username": "carl", "password": "new-pw"}).status_code == 200
    assert client.request("POST", "/login", json={"username": "carl", "password": "pw-1"}).status_code == 404


def test_one_session_per_installation(client: Client) -> None:
    signup(client, "dan")
    headers = {"X-Parse-Installation-Id": "same-device"}
    first = client.request("POST", "/login", json={"username": "dan", "password": "pw-1"}, headers=headers).json()
    second = client.request("POST", "/login", json={"username": "dan", "password": "pw-1"}, headers=headers).json()
    assert client.request("GET", "/users/me", headers=as_user(first["sessionToken"])).status_code == 400
    assert client.request("GET", "/users/me", headers=as_user(second["sessionToken"])).status_code == 200
    sessions = client.request("GET", "/sessions", headers=as_user(second["sessionToken"])).json()["results"]
    assert sorted(s["installationId"] for s in sessions) == ["inst-dan", "same-device"]  # the sign-up's and one


def test_invalid_token_fails_even_public_routes(client: Client) -> None:
    r = client.request("GET", "/classes/Anything", headers=as_user("r:nope"))
    assert (r.status_code, r.json()) == (400, {"code": 209, "error": "Invalid session token"})


def test_acls_with_roles_and_inheritance(client: Client) -> None:
    alice, bob = signup(client, "alice2"), signup(client, "bob2")
    ptr = {"__type": "Pointer", "className": "_User", "objectId": alice["objectId"]}
    mods = client.request("POST", "/roles", master=True, json={
        "name": "Moderators", "ACL": {"*": {"read": True}},
        "users": {"__op": "AddRelation", "objects": [ptr]}}).json()
    client.request("POST", "/roles", master=True, json={
        "name": "Admins", "ACL": {"*": {"read": True}},
        "roles": {"__op": "AddRelation", "objects": [{"__type": "Pointer", "className": "_Role",
                                                       "objectId": mods["objectId"]}]}})
    doc = client.request("POST", "/classes/Doc", master=True,
                         json={"t": 1, "ACL": {"role:Admins": {"read": True, "write": True}}}).json()
    r = client.request("GET", f"/classes/Doc/{doc['objectId']}", headers=as_user(alice["sessionToken"]))
    assert r.status_code == 200  # alice is a Moderator, and Moderators inherit Admins' access
    r = client.request("GET", f"/classes/Doc/{doc['objectId']}", headers=as_user(bob["sessionToken"]))
    assert r.status_code == 404
    r = client.request("PUT", f"/classes/Doc/{doc['objectId']}", json={"t": 2}, headers=as_user(alice["sessionToken"]))
    assert r.status_code == 200


def test_role_rules(client: Client) -> None:
    r = client.request("POST", "/roles", master=True, json={"name": "Bad Name!", "ACL": {}})
    assert r.json()["code"] == 139
    r = client.request("POST", "/roles", master=True, json={"name": "NoAcl"})
    assert (r.status_code, r.json()["code"]) == (400, 111)
    role = client.request("POST", "/roles", master=True, json={"name": "Staff", "ACL": {}}).json()
    r = client.request("POST", "/roles", master=True, json={"name": "Staff", "ACL": {}})
    assert (r.status_code, r.json()["code"]) == (400, 137)
    r = client.request("PUT", f"/roles/{role['objectId']}", master=True, json={"name": "Other"})
    assert (r.status_code, r.json()["code"]) == (400, 136)


def test_class_level_permissions(client: Client) -> None:
    owner = signup(client, "owner")
    other = signup(client, "someone")
    client.request("POST", "/schemas/Note", master=True, json={
        "fields": {"owner": {"type": "Pointer", "targetClass": "_User"}, "text": {"type": "String"}},
        "classLevelPermissions": {"find": {"requiresAuthentication": True}, "get": {"requiresAuthentication": True},
                                  "count": {}, "create": {"*": True}, "update": {}, "delete": {},
                                  "addField": {}, "readUserFields": [], "writeUserFields": ["owner"],
                                  "protectedFields": {"*": ["text"]}}})
    me = {"__type": "Pointer", "className": "_User", "objectId": owner["objectId"]}
    note = client.request("POST", "/classes/Note", json={"owner": me, "text": "secret"},
                          headers=as_user(owner["sessionToken"])).json()
    r = client.request("GET", "/classes/Note")
    assert (r.status_code, r.json()) == (404, {"code": 101,
                                               "error": "Permission denied, user needs to be authenticated."})
    found = client.request("GET", "/classes/Note", headers=as_user(other["sessionToken"])).json()["results"]
    assert len(found) == 1 and "text" not in found[0]
    r = client.request("PUT", f"/classes/Note/{note['objectId']}", json={"owner": me},
                       headers=as_user(other["sessionToken"]))
    assert r.status_code == 404  # pointer permissions: only the owner may update
    r = client.request("PUT", f"/classes/Note/{note['objectId']}", json={"owner": me},
                       headers=as_user(owner["sessionToken"]))
    assert r.status_code == 200
    r = client.request("POST", "/classes/Note", json={"extra": 1}, master=False)
    assert (r.status_code, r.json()["code"]) == (400, 119)  # addField is closed to the public...
    r = client.request("POST", "/classes/Note", json={"extra": 1, "owner": me}, headers=as_user(owner["sessionToken"]))
    assert r.status_code == 201  # ...but, as parse-server, open to users named by writeUserFields
    r = client.request("GET", "/classes/Note", params={"count": 1, "limit": 0}, headers=as_user(owner["sessionToken"]))
    assert (r.status_code, r.json()["code"]) == (400, 119)


def test_system_class_security(client: Client) -> None:
    r = client.request("GET", "/installations")
    assert (r.status_code, r.json()["code"]) == (400, 119)
    r = client.request("GET", "/classes/_JobStatus")
    assert (r.status_code, r.json()["code"]) == (400, 119)
    r = client.request("POST", "/classes/_Session", json={"sessionToken": "r:x"})
    assert (r.status_code, r.json()) == (400, {"code": 209, "error": "Session token required."})
    user = signup(client, "fixer")
    r = client.request("POST", "/sessions", json={"sessionToken": "r:chosen", "user": "someone-else"},
                       headers=as_user(user["sessionToken"]))
    assert r.status_code == 201  # a new session of the caller's own, with a token the server chose
    assert r.json()["sessionToken"] != "r:chosen" and r.json()["user"]["objectId"] == user["objectId"]
    r = client.request("GET", "/sessions")
    assert (r.status_code, r.json()["code"]) == (400, 209)


def test_login_as_and_verify_password(client: Client) -> None:
    a = signup(client, "erin")
    r = client.request("POST", "/loginAs", json={"userId": a["objectId"]})
    assert (r.status_code, r.json()["code"]) == (400, 119)
    r = client.request("POST", "/loginAs", json={"userId": a["objectId"]}, master=True)
    assert r.status_code == 200 and r.json()["sessionToken"].startswith("r:")
    r = client.request("GET", "/verifyPassword", params={"username": "erin", "password": "pw-1"})
    assert r.status_code == 200 and "sessionToken" not in r.json()


def test_anonymous_users_and_auth_data_takeover(client: Client) -> None:
    auth_data = {"anonymous": {"id": "4b4a4c1b-0000-4000-8000-000000000001"}}
    r = client.request("POST", "/users", json={"authData": auth_data})
    assert r.status_code == 201
    first = r.json()
    assert len(first["username"]) == 25 and first["sessionToken"].startswith("r:")
    again = client.request("POST", "/users", json={"authData": auth_data})
    assert again.status_code == 200 and again.json()["objectId"] == first["objectId"]
    assert again.json()["authData"] == auth_data
    # as parse-server 9.10: a bad id is 162, no id at all is a sign-up without a username (200),
    # an unknown provider 252
    for bad, code in (({"anonymous": {"id": ""}}, 162), ({"anonymous": {"id": {"$ne": None}}}, 162),
                      ({"anonymous": {}}, 200), ({"facebook": {"id": "x", "access_token": "y"}}, 252)):
        r = client.request("POST", "/users", json={"authData": bad})
        assert (r.status_code, r.json()["code"]) == (400, code), bad
    other = signup(client, "victim2")
    r = client.request("PUT", f"/users/{other['objectId']}", json={"authData": auth_data},
                       headers=as_user(other["sessionToken"]))
    assert (r.status_code, r.json()) == (400, {"code": 208, "error": "this auth is already used"})


def test_read_only_master_key(database_uri: str) -> None:
    from tests.server.conftest import make_client

    c = make_client(database_uri, read_only_master_key="ro")
    try:
        c.request("POST", "/classes/T", json={"a": 1}, master=True)
        ro = {"X-Parse-Master-Key": "ro"}
        assert c.request("GET", "/classes/T", headers=ro).json()["results"][0]["a"] == 1
        r = c.request("POST", "/classes/T", json={"a": 2}, headers=ro)
        assert (r.status_code, r.json()) == (400, {"code": 119, "error": "read-only masterKey isn't allowed to "
                                                                          "perform the create operation."})
    finally:
        c.close()


def test_installations_register_once_and_cannot_be_listed(client: Client) -> None:
    body = {"installationId": "ABC-123", "deviceType": "ios", "deviceToken": "AAFF", "channels": ["news"]}
    r = client.request("POST", "/installations", json=body)
    assert r.status_code == 201
    oid = r.json()["objectId"]
    r = client.request("POST", "/installations", json={**body, "badge": 3})
    assert r.status_code == 200 and r.json()["objectId"] == oid
    stored = client.request("GET", f"/installations/{oid}", master=True).json()
    assert stored["installationId"] == "abc-123" and stored["deviceToken"] == "aaff" and stored["badge"] == 3
    assert client.request("GET", "/installations").json()["code"] == 119
    assert client.request("DELETE", f"/installations/{oid}").json()["code"] == 119
    r = client.request("POST", "/installations", json={"deviceType": "android"})
    assert (r.status_code, r.json()["code"]) == (400, 135)


def test_password_reset_through_the_routes_and_pages(database_uri: str, tmp_path) -> None:  # noqa: ANN001
    import re
    from urllib.parse import parse_qs, urlsplit

    from tests.server.conftest import make_client

    mail = tmp_path / "mail"
    c = make_client(database_uri, app_name="Demo", public_server_url="http://testserver/parse",
                    email_adapter={"module": "folder", "options": {"directory": str(mail)}})
    try:
        r = c.request("POST", "/users", json={"username": "rita", "password": "old-pw", "email": "rita@example.com"})
        assert r.status_code == 201
        assert c.request("POST", "/requestPasswordReset", json={"email": "rita@example.com"}).json() == {}
        body = c.api.account.adapter.messages()[-1].get_body(preferencelist=("plain",)).get_content()
        link = re.search(r"http://testserver/parse/apps/\S+", body).group(0)
        token = parse_qs(urlsplit(link).query)["token"][0]
        assert c.loop.run_until_complete(c.http.get(link.replace("http://testserver", ""))).status_code == 200
        r = c.loop.run_until_complete(c.http.post("/parse/apps/test/request_password_reset",
                                                  data={"token": token, "new_password": "new-pw"}))
        assert r.status_code in (200, 303)
        assert c.request("POST", "/login", json={"username": "rita", "password": "new-pw"}).status_code == 200
        assert c.request("POST", "/login", json={"username": "rita", "password": "old-pw"}).status_code == 404
    finally:
        c.close()


def test_upgrade_to_revocable_session(client: Client, database_uri: str) -> None:
    user = signup(client, "legacy")
    store = client.api.storage
    schema = client.loop.run_until_complete(client.api.schemas.get("_User"))
    client.loop.run_until_complete(store.update(schema, __import__("parsectl.model.query", fromlist=["Compare"])
                                                .Compare("objectId", "eq", user["objectId"]),
                                                {"_session_token": "c1tEDx6QAjE8aGZnKK4fhS2R0"}))
    r = client.request("POST", "/upgradeToRevocableSession",
                       headers={"X-Parse-Session-Token": "c1tEDx6QAjE8aGZnKK4fhS2R0"})
    if not database_uri.startswith("mongodb"):  # only parse-server's MongoDB format keeps legacy tokens
        assert (r.status_code, r.json()) == (400, {"code": 209, "error": "invalid legacy session token"})
        return
    assert r.status_code == 200, r.text
    session = r.json()
    assert session["sessionToken"].startswith("r:") and session["createdWith"] == {"action": "upgrade"}
    assert session["user"]["objectId"] == user["objectId"]
    again = client.request("POST", "/upgradeToRevocableSession",
                           headers={"X-Parse-Session-Token": "c1tEDx6QAjE8aGZnKK4fhS2R0"})
    assert again.json()["code"] == 209  # the legacy token is used up


def test_third_party_auth_provider_hook(database_uri: str) -> None:
    from parsectl.model.errors import ParseError
    from tests.server.conftest import make_client

    seen = []

    async def validate(auth_data: dict, options: dict) -> None:
        seen.append((auth_data["id"], options))
        if auth_data.get("access_token") != f"token-of-{auth_data['id']}":
            raise ParseError(101, "myco auth is invalid for this user.")

    c = make_client(database_uri, auth={"myco": validate})
    try:
        good = {"myco": {"id": "u1", "access_token": "token-of-u1"}}
        first = c.request("POST", "/users", json={"authData": good})
        assert first.status_code == 201 and first.json()["sessionToken"].startswith("r:")
        again = c.request("POST", "/users", json={"authData": good})
        assert again.status_code == 200 and again.json()["objectId"] == first.json()["objectId"]
        r = c.request("POST", "/users", json={"authData": {"myco": {"id": "u1", "access_token": "stolen"}}})
        assert (r.status_code, r.json()) == (404, {"code": 101, "error": "myco auth is invalid for this user."})
        r = c.request("POST", "/users", json={"authData": {"other": {"id": "x"}}})
        assert (r.status_code, r.json()["code"]) == (400, 252)
        assert [s[0] for s in seen] == ["u1", "u1", "u1"]
    finally:
        c.close()


def test_link_and_unlink_keep_other_providers(database_uri: str) -> None:
    from tests.server.conftest import make_client

    c = make_client(database_uri, auth={"myco": lambda data, options: None})
    try:
        user = c.request("POST", "/users", json={"username": "linker", "password": "pw"}).json()
        h = as_user(user["sessionToken"])
        anon = {"anonymous": {"id": "11111111-0000-4000-8000-000000000000"}}
        assert c.request("PUT", f"/users/{user['objectId']}", json={"authData": anon}, headers=h).status_code == 200
        myco = {"myco": {"id": "m1"}}
        assert c.request("PUT", f"/users/{user['objectId']}", json={"authData": myco}, headers=h).status_code == 200
        me = c.request("GET", "/users/me", headers=h).json()
        assert me["authData"] == {**anon, **myco}
        r = c.request("PUT", f"/users/{user['objectId']}", json={"authData": {"anonymous": None}}, headers=h)
        assert r.status_code == 200
        assert c.request("GET", "/users/me", headers=h).json()["authData"] == myco
    finally:
        c.close()


def test_account_lockout(database_uri: str) -> None:
    from tests.server.conftest import make_client

    c = make_client(database_uri, account_lockout={"threshold": 2, "duration": 5})
    try:
        user = signup(c, "locky", "right-pw")
        wrong, right = {"username": "locky", "password": "nope"}, {"username": "locky", "password": "right-pw"}
        invalid = {"code": 101, "error": "Invalid username/password."}
        locked = {"code": 101, "error": "Your account is locked due to multiple failed login attempts. "
                                        "Please try again after 5 minute(s)"}
        # a right password resets the count: one wrong, one right, one wrong stays unlocked
        assert c.request("POST", "/login", json=wrong).json() == invalid
        assert c.request("POST", "/login", json=right).status_code == 200
        assert c.request("POST", "/login", json=wrong).json() == invalid
        r = c.request("POST", "/login", json=wrong)
        assert (r.status_code, r.json()) == (404, invalid)
        # locked now: the right password is refused too, and so is verifyPassword
        r = c.request("POST", "/login", json=right)
        assert (r.status_code, r.json()) == (404, locked)
        assert c.request("POST", "/verifyPassword", json=right).json() == locked
        # the lockout writes leave updatedAt alone; an unknown user is still just invalid
        me = c.request("GET", f"/users/{user['objectId']}", master=True).json()
        assert me["updatedAt"] == me["createdAt"]
        assert c.request("POST", "/login", json={"username": "ghost", "password": "x"}).json() == invalid
        # once the lockout has expired, the right password logs in and resets the count
        rest = c.api.rest
        schema = c.loop.run_until_complete(rest.schemas.get("_User"))
        c.loop.run_until_complete(rest.storage.update(schema, query.Compare("objectId", "eq", user["objectId"]), {
            "_account_lockout_expires_at": codec.date("2001-01-01T00:00:00.000Z")}))
        assert c.request("POST", "/login", json=right).status_code == 200
        assert c.request("POST", "/login", json=wrong).json() == invalid
    finally:
        c.close()

