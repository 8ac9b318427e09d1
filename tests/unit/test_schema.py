"""Class schemas: name rules, default fields, type checks and the /schemas wire shape."""

from __future__ import annotations

import pytest

from parsectl.model import schema as s
from parsectl.model.errors import ParseError


@pytest.mark.parametrize("name", ["GameScore", "a", "A_1", "_User", "_Role", "_Session", "_Installation",
                                  "_Join:users:_Role", "_GlobalConfig"])
def test_valid_class_names(name):
    assert s.class_name_is_valid(name)
    s.check_class_name(name)


@pytest.mark.parametrize("name", ["1abc", "_Custom", "with space", "a-b", "", "_Join:users", "Ça"])
def test_invalid_class_names_103(name):
    assert not s.class_name_is_valid(name)
    with pytest.raises(ParseError) as info:
        s.check_class_name(name)
    assert info.value.code == 103
    assert info.value.message == (
        f"Invalid classname: {name}, classnames can only have alphanumeric characters and _, "
        "and must start with an alpha character ")


def test_non_string_class_name_103():
    with pytest.raises(ParseError) as info:
        s.check_class_name(None)  # type: ignore[arg-type]
    assert info.value.code == 103


@pytest.mark.parametrize("name", ["score", "a_b", "X9"])
def test_valid_field_names(name):
    assert s.field_name_is_valid(name)
    s.check_field_name(name)


@pytest.mark.parametrize("name", ["className", "length", "_private", "1st", "a.b", "a$b", ""])
def test_invalid_field_names_105(name):
    with pytest.raises(ParseError) as info:
        s.check_field_name(name)
    assert (info.value.code, info.value.message) == (105, f"Invalid field name: {name}.")


def test_new_schema_has_base_and_default_fields():
    plain = s.ClassSchema.new("Post", {"title": {"type": "String"}})
    assert plain.fields == {**s.BASE_FIELDS, "title": {"type": "String"}}
    assert plain.clp == s.default_clp()
    role = s.ClassSchema.new("_Role")
    assert role.fields["users"] == {"type": "Relation", "targetClass": "_User"}
    assert role.relation_fields() == {"users": "_User", "roles": "_Role"}
    user = s.ClassSchema.new("_User")
    assert user.fields["emailVerified"] == {"type": "Boolean"}
    assert user.relation_fields() == {}


def test_new_schema_does_not_share_field_dicts():
    a = s.ClassSchema.new("A")
    a.fields["x"] = {"type": "String"}
    assert "x" not in s.ClassSchema.new("A").fields
    assert "x" not in s.BASE_FIELDS


def test_check_value_type():
    schema = s.ClassSchema.new("Post", {"n": {"type": "Number"}, "p": {"type": "Pointer", "targetClass": "A"}})
    assert schema.check_value_type("n", {"type": "Number"}) is False
    assert schema.check_value_type("new", {"type": "String"}) is True
    assert schema.check_value_type("n", None) is False
    assert schema.check_value_type("ACL", {"type": "Object"}) is False
    with pytest.raises(ParseError) as info:
        schema.check_value_type("n", {"type": "String"})
    assert (info.value.code, info.value.message) == (
        111, "schema mismatch for Post.n; expected Number but got String")
    with pytest.raises(ParseError) as info:
        schema.check_value_type("p", {"type": "Pointer", "targetClass": "B"})
    assert info.value.message == "schema mismatch for Post.p; expected Pointer<A> but got Pointer<B>"


def test_to_json_shape_and_copies():
    schema = s.ClassSchema.new("Post", {"t": {"type": "String"}})
    data = schema.to_json()
    assert data == {"className": "Post", "fields": schema.fields, "classLevelPermissions": s.default_clp()}
    data["fields"]["t"]["type"] = "Number"
    data["classLevelPermissions"]["find"]["*"] = False
    assert schema.fields["t"] == {"type": "String"}
    assert schema.clp["find"] == {"*": True}
    schema.indexes = {"t_1": {"t": 1}}
    assert schema.to_json()["indexes"] == {"t_1": {"t": 1}}
