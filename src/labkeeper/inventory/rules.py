"""Tag rules: parse, validate and evaluate rule trees in pure Python (same result on every backend).

A rule is a tree. Groups combine their children, leaves test one device field:

    {"op": "and" | "or", "rules": [<node>, ...], "negate"?: bool}
    {"field": "mgmt_address", "operator": "in_subnet", "value": "10.0.0.0/8", "negate"?: bool}

Text operators (equals, contains, startswith, endswith, regex) ignore case. `in_subnet` matches
fields holding an IP address inside the network given as value. A field with no value matches no
leaf (so a negated leaf matches it).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

FIELDS = (
    "name",
    "hostname",
    "mgmt_address",
    "platform",
    "model",
    "serial",
    "site",
    "device_type",
    "status",
    "notes",
)
OPERATORS = ("equals", "contains", "startswith", "endswith", "regex", "in_subnet")
GROUP_OPS = ("and", "or")
# Bounds that keep one rule cheap to store and to evaluate against thousands of devices.
MAX_DEPTH = 8
MAX_NODES = 200
MAX_VALUE = 500

Values = Mapping[str, str | None]
Matcher = Callable[[Values], bool]


class RuleError(ValueError):
    """A rule tree that cannot be used; `path` names the offending node or key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _negate(node: dict[str, Any], path: str) -> bool:
    value = node.get("negate", False)
    if not isinstance(value, bool):
        raise RuleError(f"{path}.negate", "negate must be true or false")
    return value


def _validate(node: Any, path: str, depth: int, count: list[int]) -> dict[str, Any]:
    count[0] += 1
    if count[0] > MAX_NODES:
        raise RuleError(path, f"a rule may have at most {MAX_NODES} nodes")
    if not isinstance(node, dict):
        raise RuleError(path, "each node must be an object (a group or a leaf)")
    if "op" in node or "rules" in node:
        unknown = sorted(set(node) - {"op", "rules", "negate"})
        if unknown:
            raise RuleError(f"{path}.{unknown[0]}", "unknown key in a group")
        op = node.get("op")
        if op not in GROUP_OPS:
            raise RuleError(f"{path}.op", "op must be 'and' or 'or'")
        children = node.get("rules")
        if not isinstance(children, list) or not children:
            raise RuleError(f"{path}.rules", "a group needs a non-empty list of rules")
        if depth >= MAX_DEPTH:
            raise RuleError(path, f"rules may be nested at most {MAX_DEPTH} levels deep")
        group: dict[str, Any] = {
            "op": op,
            "rules": [
                _validate(child, f"{path}.rules.{i}", depth + 1, count)
                for i, child in enumerate(children)
            ],
        }
        if _negate(node, path):
            group["negate"] = True
        return group
    unknown = sorted(set(node) - {"field", "operator", "value", "negate"})
    if unknown:
        raise RuleError(f"{path}.{unknown[0]}", "unknown key in a leaf")
    field = node.get("field")
    if field not in FIELDS:
        raise RuleError(f"{path}.field", "field must be one of " + ", ".join(FIELDS))
    operator = node.get("operator")
    if operator not in OPERATORS:
        raise RuleError(f"{path}.operator", "operator must be one of " + ", ".join(OPERATORS))
    value = node.get("value")
    if not isinstance(value, str) or not value.strip():
        raise RuleError(f"{path}.value", "value must be a non-empty string")
    if len(value) > MAX_VALUE or "\x00" in value:
        raise RuleError(f"{path}.value", f"value must be at most {MAX_VALUE} printable characters")
    if operator == "regex":
        try:
            re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise RuleError(f"{path}.value", f"not a valid regular expression: {exc}") from None
    elif operator == "in_subnet":
        value = value.strip()
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise RuleError(
                f"{path}.value", f"{value!r} is not a subnet such as 10.0.0.0/8 or 2001:db8::/32"
            ) from None
    leaf: dict[str, Any] = {"field": field, "operator": operator, "value": value}
    if _negate(node, path):
        leaf["negate"] = True
    return leaf


def validate(tree: Any, *, path: str = "rule") -> dict[str, Any]:
    """The tree checked and normalised; RuleError naming the path of the first problem."""
    return _validate(tree, path, 0, [0])


def _text_test(operator: str, value: str) -> Callable[[str], bool]:
    wanted = value.casefold()
    if operator == "equals":
        return lambda s: s.casefold() == wanted
    if operator == "contains":
        return lambda s: wanted in s.casefold()
    if operator == "startswith":
        return lambda s: s.casefold().startswith(wanted)
    if operator == "endswith":
        return lambda s: s.casefold().endswith(wanted)
    pattern = re.compile(value, re.IGNORECASE)
    return lambda s: pattern.search(s) is not None


def _subnet_test(value: str) -> Callable[[str], bool]:
    network = ipaddress.ip_network(value.strip(), strict=False)

    def test(s: str) -> bool:
        try:
            return ipaddress.ip_address(s.strip()) in network
        except ValueError:  # a DNS name or garbage is in no subnet
            return False

    return test


def _compile(node: dict[str, Any]) -> Matcher:
    negate = bool(node.get("negate"))
    if "op" in node:
        children = [_compile(child) for child in node["rules"]]
        combine = all if node["op"] == "and" else any

        def group(values: Values) -> bool:
            return combine(child(values) for child in children) != negate

        return group
    field = node["field"]
    operator = node["operator"]
    test = (
        _subnet_test(node["value"])
        if operator == "in_subnet"
        else _text_test(operator, node["value"])
    )

    def leaf(values: Values) -> bool:
        found = values.get(field)
        matched = found is not None and test(str(found))
        return matched != negate

    return leaf


def compile_rule(tree: Any) -> Matcher:
    """A function telling whether a device's field values match a rule (validated first)."""
    return _compile(validate(tree))


def matches(tree: Any, values: Values) -> bool:
    """Whether a device's field values match a rule tree."""
    return compile_rule(tree)(values)
