"""PromQL syntax errors with a position: `promql_parser` says what is wrong but not where, so a
config check could only repeat "invalid promql query" for a long expression.

The position comes from, in order: a scan of brackets and quotes (an unclosed `(` is reported where it
opens, an extra `)` where it stands), the token the parser's message names (`5q`, `nofunc`), or the
first token after which no completion of the expression parses.
"""

from __future__ import annotations

import re

_CLOSERS = {")": "(", "]": "[", "}": "{"}
_OPENERS = {v: k for k, v in _CLOSERS.items()}
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"?|\'(?:\\.|[^\'\\])*\'?|`[^`]*`?|[A-Za-z_:][\w:.]*|\d[\w.]*|\S')
_NAMED = re.compile(r"syntax: (\S+)|name '([^']+)'|function '([^']+)'|'([^']+)'")
# what may follow an incomplete prefix so that it parses: an operand, an aggregation body, a label value
_INSIDE = ("", " x", " x[5m]", "[5m]", '=""', '""', "5m", " 1")
_AFTER = ("", " (x)", " (x) (x)", " x", " 1")


def promql_error(expr: str) -> str | None:
    """None if `expr` parses as PromQL, else the parser's message with the 1-based column it points at.

    >>> promql_error("sum by (model (rate(x[5m]))")
    'unclosed left parenthesis at column 8 near "(model (rate(x[5m]))"'
    >>> promql_error("rate(x[5m])") is None
    True
    """
    message = _parse_error(expr)
    if message is None:
        return None
    where = _bracket_error(expr)
    if where is None:
        where = _named_token(expr, message)
    if where is None:
        where = _first_bad_token(expr)
    near = expr[where:where + 24].splitlines()[0] if expr[where:].strip() else ""
    return f'{message} at column {where + 1} ' + (f'near "{near}"' if near else "(the end of the expression)")


def _parse_error(expr: str) -> str | None:
    import promql_parser

    try:
        promql_parser.parse(expr)
    except ValueError as exc:
        return str(exc) or "invalid promql query"
    except Exception as exc:  # noqa: BLE001 - the Rust binding raises its own types on odd input
        return f"{type(exc).__name__}: {exc}"
    return None


def _bracket_error(expr: str) -> int | None:
    """Offset of an unbalanced bracket or an unterminated string, outside strings and comments."""
    stack: list[tuple[str, int]] = []
    for match in _TOKEN.finditer(expr):
        token, at = match.group(), match.start()
        if token[0] in "\"'`" and (len(token) == 1 or token[-1] != token[0] or token.endswith("\\" + token[0])):
            return at
        if token == "#":
            break  # a comment runs to the end of the line; PromQL configs are one line as a rule
        if token in _OPENERS:
            stack.append((token, at))
        elif token in _CLOSERS:
            if not stack or stack[-1][0] != _CLOSERS[token]:
                return at
            stack.pop()
    return stack[-1][1] if stack else None


def _named_token(expr: str, message: str) -> int | None:
    """Offset of the token the parser's message quotes (`bad number or duration syntax: 5q`)."""
    match = _NAMED.search(message)
    if match is None:
        return None
    found = expr.find(next(g for g in match.groups() if g))
    return found if found >= 0 else None


def _first_bad_token(expr: str) -> int:
    """Offset of the first token after which no completion of the expression parses."""
    for match in _TOKEN.finditer(expr):
        prefix = expr[:match.end()]
        closers = "".join(_OPENERS[t] for t in reversed(_open_brackets(prefix)))
        if not any(_parse_error(prefix + c + closers + d) is None for c in _INSIDE for d in _AFTER):
            return match.start()
    return len(expr)  # every prefix could go on: the expression stops too early


def _open_brackets(prefix: str) -> list[str]:
    stack: list[str] = []
    for match in _TOKEN.finditer(prefix):
        if match.group() in _OPENERS:
            stack.append(match.group())
        elif match.group() in _CLOSERS and stack:
            stack.pop()
    return stack
