"""Safe PromQL building blocks: quoted strings, selectors, number literals, label names, and the labels
an expression keeps (read with promql-parser)."""

from __future__ import annotations

import math
import re
from typing import Any

LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RulesError(ValueError):
    """Rules or dashboards cannot be generated; the message names the baseline or field and what to do."""


def quote(value: str) -> str:
    """A PromQL string literal for any text (backslash, quote and control characters escaped).

    >>> print(quote('say "hi" \\\\o/'))
    "say \\"hi\\" \\\\o/"
    """
    out = []
    for ch in value:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def selector(metric: str, alias: str) -> str:
    """`metric{baseline="alias"}` with the alias quoted."""
    return f"{metric}{{baseline={quote(alias)}}}"


def number(x: float) -> str:
    """A float as a PromQL number literal.

    >>> number(1.0), number(1e-9), number(2.5)
    ('1', '1e-09', '2.5')
    """
    if not math.isfinite(x):
        raise RulesError(f"{x!r} is not a finite number")
    return repr(float(x)) if x != int(x) else str(int(x))


def check_label_name(name: str, where: str) -> str:
    """`name` if it is a valid Prometheus label name, else a `RulesError` naming `where`."""
    if not LABEL_NAME.match(name) or name.startswith("__"):
        raise RulesError(f"{where}: {name!r} is not a valid label name ([A-Za-z_][A-Za-z0-9_]*)")
    return name


def expr_label_names(expr: str) -> tuple[str, ...] | None:
    """The labels the expr's outermost aggregation keeps (`by (...)`); None when they cannot be known."""
    import promql_parser

    try:
        node = promql_parser.parse(expr)
    except ValueError:  # not parseable here; promtool will say what is wrong
        return None
    dropped: set[str] = set()
    while True:
        if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr)):
            node = node.expr
        elif isinstance(node, promql_parser.BinaryExpr) and _is_scalar(node.rhs):
            node = node.lhs
        elif isinstance(node, promql_parser.BinaryExpr) and _is_scalar(node.lhs):
            node = node.rhs
        elif isinstance(node, promql_parser.BinaryExpr) and _one_to_one(node):
            node = node.lhs  # one-to-one matching keeps the left side's labels
        elif isinstance(node, promql_parser.Call) and node.func.name == "histogram_quantile":
            dropped.add("le")
            node = node.args[1]
        elif isinstance(node, promql_parser.AggregateExpr):
            modifier = node.modifier
            if modifier is None:
                return ()
            if modifier.type != promql_parser.AggModifierType.By:
                return None
            names = {"exported_baseline" if n == "baseline" else n for n in modifier.labels} - dropped
            return tuple(sorted(names))
        else:
            return None


def _one_to_one(node: Any) -> bool:
    import promql_parser

    modifier = node.modifier
    return modifier is None or modifier.card == promql_parser.VectorMatchCardinality.OneToOne


def _is_scalar(node: Any) -> bool:
    import promql_parser

    return isinstance(node, promql_parser.NumberLiteral) or (
        isinstance(node, promql_parser.ParenExpr) and _is_scalar(node.expr))
