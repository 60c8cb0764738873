"""Tag rule trees: validation naming the path, every operator, and/or/negate (pure, no database)."""

from __future__ import annotations

import pytest

from labkeeper.inventory import rules

DEVICE = {
    "name": "Core-SW1",
    "hostname": "core-sw1.lab.example",
    "mgmt_address": "10.1.2.3",
    "platform": "cisco_ios",
    "model": "C9300-48P",
    "serial": "FOC1234X",
    "site": "Dublin",
    "device_type": "switch",
    "status": "available",
    "notes": None,
}


def leaf(field: str, operator: str, value: str, negate: bool = False) -> dict:
    node = {"field": field, "operator": operator, "value": value}
    if negate:
        node["negate"] = True
    return node


@pytest.mark.parametrize(
    ("node", "expected"),
    [
        (leaf("name", "equals", "core-sw1"), True),  # text operators ignore case
        (leaf("name", "equals", "core-sw"), False),
        (leaf("hostname", "contains", "LAB.example"), True),
        (leaf("hostname", "contains", "dc2"), False),
        (leaf("platform", "startswith", "cisco_"), True),
        (leaf("platform", "startswith", "juniper"), False),
        (leaf("hostname", "endswith", ".example"), True),
        (leaf("hostname", "endswith", ".org"), False),
        (leaf("model", "regex", r"^c9[0-9]{3}-\d+p$"), True),
        (leaf("model", "regex", r"^C3850"), False),
        (leaf("mgmt_address", "in_subnet", "10.1.0.0/16"), True),
        (leaf("mgmt_address", "in_subnet", "10.2.0.0/16"), False),
        (leaf("mgmt_address", "in_subnet", "2001:db8::/32"), False),  # other IP version
        (leaf("hostname", "in_subnet", "10.0.0.0/8"), False),  # a DNS name is in no subnet
        (leaf("serial", "equals", "FOC1234X", negate=True), False),
        (leaf("site", "equals", "Cork", negate=True), True),
        (leaf("notes", "contains", "x"), False),  # no value matches no leaf...
        (leaf("notes", "contains", "x", negate=True), True),  # ...so its negation matches
    ],
)
def test_each_operator(node, expected):
    assert rules.matches(node, DEVICE) is expected


def test_and_or_and_negated_groups_nest():
    is_switch = leaf("device_type", "equals", "switch")
    in_lab = leaf("mgmt_address", "in_subnet", "10.1.2.0/24")
    in_cork = leaf("site", "equals", "Cork")
    assert rules.matches({"op": "and", "rules": [is_switch, in_lab]}, DEVICE)
    assert not rules.matches({"op": "and", "rules": [is_switch, in_cork]}, DEVICE)
    assert rules.matches({"op": "or", "rules": [in_cork, in_lab]}, DEVICE)
    assert not rules.matches(
        {"op": "or", "rules": [in_cork, leaf("status", "equals", "retired")]}, DEVICE
    )
    nested = {"op": "and", "rules": [is_switch, {"op": "or", "rules": [in_cork], "negate": True}]}
    assert rules.matches(nested, DEVICE)
    assert rules.matches(
        {"op": "or", "rules": [in_cork, leaf("site", "equals", "cork")]}, {**DEVICE, "site": "CORK"}
    )


@pytest.mark.parametrize(
    ("tree", "path"),
    [
        ("name", "rule"),
        ({"op": "xor", "rules": [leaf("name", "equals", "a")]}, "rule.op"),
        ({"op": "and", "rules": []}, "rule.rules"),
        (
            {"op": "and", "rules": [leaf("name", "equals", "a"), leaf("colour", "equals", "a")]},
            "rule.rules.1.field",
        ),
        (
            {"op": "or", "rules": [{"op": "and", "rules": [leaf("name", "like", "a")]}]},
            "rule.rules.0.rules.0.operator",
        ),
        ({"op": "and", "rules": [leaf("model", "regex", "([unclosed")]}, "rule.rules.0.value"),
        (leaf("mgmt_address", "in_subnet", "10.0.0.0/33"), "rule.value"),
        (leaf("mgmt_address", "in_subnet", "lab-net"), "rule.value"),
        (leaf("name", "equals", ""), "rule.value"),
        ({"field": "name", "operator": "equals", "value": 5}, "rule.value"),
        ({**leaf("name", "equals", "a"), "negate": "yes"}, "rule.negate"),
        ({**leaf("name", "equals", "a"), "extra": 1}, "rule.extra"),
        ({"op": "and", "rules": [leaf("name", "equals", "a")], "match": "all"}, "rule.match"),
    ],
)
def test_invalid_trees_name_the_path(tree, path):
    with pytest.raises(rules.RuleError) as exc:
        rules.validate(tree)
    assert exc.value.path == path


def test_depth_and_size_are_bounded():
    deep: dict = leaf("name", "equals", "a")
    for _ in range(rules.MAX_DEPTH + 1):
        deep = {"op": "and", "rules": [deep]}
    with pytest.raises(rules.RuleError, match="nested"):
        rules.validate(deep)
    wide = {"op": "or", "rules": [leaf("name", "equals", str(i)) for i in range(rules.MAX_NODES)]}
    with pytest.raises(rules.RuleError, match="at most"):
        rules.validate(wide)


def test_validation_normalises():
    tree = {
        "op": "and",
        "rules": [
            {
                "field": "mgmt_address",
                "operator": "in_subnet",
                "value": " 10.0.0.0/8 ",
                "negate": False,
            }
        ],
    }
    assert rules.validate(tree) == {
        "op": "and",
        "rules": [{"field": "mgmt_address", "operator": "in_subnet", "value": "10.0.0.0/8"}],
    }
