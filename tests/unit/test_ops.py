"""Update operations: parsing, errors and the semantics of apply()."""

from __future__ import annotations

import pytest

from parsectl.model import codec, ops
from parsectl.model.errors import ParseError


def _error(body):
    with pytest.raises(ParseError) as info:
        ops.parse_op(body)
    return info.value.code, info.value.message


P1 = codec.pointer("Post", "p1")
P2 = codec.pointer("Post", "p2")


# --- parsing ---------------------------------------------------------------------------------------


def test_parse_each_op():
    assert ops.parse_op({"__op": "Delete"}) == ops.Delete()
    assert ops.parse_op({"__op": "Increment", "amount": 3}) == ops.Increment(3)
    assert ops.parse_op({"__op": "Increment", "amount": -1.5}) == ops.Increment(-1.5)
    assert ops.parse_op({"__op": "Add", "objects": [1, "a"]}) == ops.Add([1, "a"])
    assert ops.parse_op({"__op": "AddUnique", "objects": [1]}) == ops.AddUnique([1])
    assert ops.parse_op({"__op": "Remove", "objects": [1]}) == ops.Remove([1])
    assert type(ops.parse_op({"__op": "AddUnique", "objects": []})) is ops.AddUnique
    assert type(ops.parse_op({"__op": "Remove", "objects": []})) is ops.Remove


def test_op_objects_are_normalised():
    op = ops.parse_op({"__op": "Add", "objects": [{"__type": "Date", "iso": "2024-01-01T01:00:00+01:00"},
                                                  {**P1, "extra": 1}]})
    assert op.objects == [codec.date("2024-01-01T00:00:00.000Z"), P1]


def test_relation_ops():
    add = ops.parse_op({"__op": "AddRelation", "objects": [P1, P2]})
    assert add == ops.RelationOp("Post", [P1, P2], [])
    assert add.field_type() == {"type": "Relation", "targetClass": "Post"}
    remove = ops.parse_op({"__op": "RemoveRelation", "objects": [P1]})
    assert remove == ops.RelationOp("Post", [], [P1])


def test_batch_merges_relation_ops():
    op = ops.parse_op({"__op": "Batch", "ops": [{"__op": "AddRelation", "objects": [P1]},
                                                {"__op": "RemoveRelation", "objects": [P2]}]})
    assert op == ops.RelationOp("Post", [P1], [P2])


def test_increment_non_number_107():
    for amount in ("1", None, True, [1]):
        assert _error({"__op": "Increment", "amount": amount}) == (107, "incrementing must provide a number")


@pytest.mark.parametrize(("kind", "verb"), [("Add", "add"), ("AddUnique", "add"), ("Remove", "remove"),
                                            ("AddRelation", "add"), ("RemoveRelation", "remove")])
def test_objects_not_array_107(kind, verb):
    assert _error({"__op": kind, "objects": "x"}) == (107, f"objects to {verb} must be an array")
    assert _error({"__op": kind}) == (107, f"objects to {verb} must be an array")


def test_unknown_op_108():
    assert _error({"__op": "Foo"}) == (108, "The Foo operator is not supported yet.")
    assert _error({"__op": "SetOnInsert", "amount": 1}) == (108, "The SetOnInsert operator is not supported yet.")


def test_relation_op_errors():
    assert _error({"__op": "AddRelation", "objects": ["p1"]}) == (107, "Invalid relation object: expected a Pointer")
    assert _error({"__op": "AddRelation", "objects": [P1, codec.pointer("Other", "o")]}) == (
        107, "All objects in a relation must have the same class")


def test_batch_errors():
    assert _error({"__op": "Batch", "ops": []}) == (107, "Batch ops must be a non-empty array")
    assert _error({"__op": "Batch", "ops": [{"__op": "Increment", "amount": 1}]}) == (
        108, "The Batch operator only supports relation operations.")
    assert _error({"__op": "Batch", "ops": [{"__op": "AddRelation", "objects": [P1]},
                                            {"__op": "RemoveRelation", "objects": [codec.pointer("X", "1")]}]}) == (
        107, "All objects in a relation must have the same class")


def test_parse_value():
    assert ops.parse_value({"__op": "Increment", "amount": 2}) == ops.Increment(2)
    assert ops.parse_value({"__type": "Date", "iso": "2024-01-01T00:00:00Z"}) == codec.date("2024-01-01T00:00:00.000Z")
    with pytest.raises(ParseError) as info:
        ops.parse_value({"a.b": 1})
    assert info.value.code == 121


# --- field types and initial values --------------------------------------------------------------------


def test_field_types_and_initial_values():
    assert ops.Increment(4).field_type() == {"type": "Number"}
    assert ops.Increment(4).initial_value() == 4
    assert ops.Add([1, 1]).field_type() == {"type": "Array"}
    assert ops.Add([1, 1]).initial_value() == [1, 1]
    assert ops.AddUnique([1, 1, 2]).initial_value() == [1, 2]
    assert ops.Remove([1]).initial_value() == []
    assert ops.Delete().field_type() is None
    assert ops.Delete().initial_value() is None


# --- apply --------------------------------------------------------------------------------------------


def test_delete_apply():
    assert ops.Delete().apply(5) is None


def test_increment_apply():
    assert ops.Increment(2).apply(None) == 2
    assert ops.Increment(2).apply(5) == 7
    assert ops.Increment(-0.5).apply(1) == 0.5
    with pytest.raises(ParseError) as info:
        ops.Increment(1).apply("5")
    assert (info.value.code, info.value.message) == (107, "Cannot increment a non-number value")
    with pytest.raises(ParseError):
        ops.Increment(1).apply(True)


def test_add_appends_duplicates_and_does_not_mutate():
    current = [1, 2]
    assert ops.Add([2, 3]).apply(current) == [1, 2, 2, 3]
    assert current == [1, 2]
    assert ops.Add(["a"]).apply(None) == ["a"]


def test_array_op_on_non_array_111():
    for op in (ops.Add([1]), ops.AddUnique([1]), ops.Remove([1])):
        with pytest.raises(ParseError) as info:
            op.apply("text")
        assert (info.value.code, info.value.message) == (111, "Cannot apply an array operation to a non-array value")


def test_add_unique_dedupes():
    assert ops.AddUnique([2, 3, 3, 4]).apply([1, 2]) == [1, 2, 3, 4]
    assert ops.AddUnique([{"a": 1, "b": 2}]).apply([{"b": 2, "a": 1}]) == [{"b": 2, "a": 1}]


def test_add_unique_dedupes_pointers_by_class_and_id():
    stored = {"__type": "Pointer", "className": "Post", "objectId": "p1", "extra": "ignored"}
    result = ops.AddUnique([P1, P2, codec.pointer("Other", "p1")]).apply([stored])
    assert result == [stored, P2, codec.pointer("Other", "p1")]


def test_remove_removes_all_occurrences():
    assert ops.Remove([1, "x"]).apply([1, "x", 2, 1, "x", 3]) == [2, 3]
    assert ops.Remove([5]).apply(None) == []
    stored = {"__type": "Pointer", "className": "Post", "objectId": "p1", "extra": "ignored"}
    assert ops.Remove([P1]).apply([stored, P2, P1, codec.pointer("Other", "p1")]) == [P2, codec.pointer("Other", "p1")]



def test_add_unique_keeps_booleans_and_numbers_apart():
    assert ops.AddUnique([True]).apply([1]) == [1, True]



def test_remove_keeps_booleans_and_numbers_apart():
    assert ops.Remove([1]).apply([True, 1, "1"]) == [True, "1"]
