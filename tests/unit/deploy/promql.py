"""The metric names a PromQL expression reads: enough PromQL to check dashboards and rules.

Not a parser: it removes what cannot be a metric name (strings, label matchers, range
and subquery brackets, grouping clauses, Grafana's `$variables`, numbers) and keeps
the identifiers that are neither a function call nor a keyword. That is all the deploy
tests need to catch a panel or alert reading a metric the worker does not export.
"""

from __future__ import annotations

import re

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-f]+|\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)(?:[smhdwy]|ms)*",
                     re.IGNORECASE)
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

# Words of the language that look like identifiers (binary and aggregation modifiers,
# offset/bool, the special floats); grouping keywords go with their label lists above.
KEYWORDS = frozenset({
    "and", "or", "unless", "atan2", "bool", "offset", "inf", "nan",
    "by", "without", "on", "ignoring", "group_left", "group_right",
})


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects, e.g. `rate(a_total{x="y"}[5m]) / b` -> {a_total, b}."""
    text = _STRING.sub(" ", expr)
    text = _VARIABLE.sub(" ", text)
    text = _MATCHERS.sub(" ", text)
    while _BRACKETS.search(text):  # subqueries nest: [5m:1m] inside [...] is rare but legal
        text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name = match.group()
        rest = text[match.end():].lstrip()
        if name.lower() in KEYWORDS or rest.startswith("("):
            continue  # a keyword or a function / aggregation call
        names.add(name)
    return names
