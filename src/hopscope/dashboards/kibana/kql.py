"""The subset of KQL the hopscope saved objects use, with its Elasticsearch translation.

The saved searches and Lens layers are written in KQL, which Kibana translates when it runs
them. This module parses the same queries so that the tests can check every field a query
names and run the query against Elasticsearch without Kibana. Supported::

    field : value      field : "quoted value"      field : *       field > 10 (>=, <, <=)
    a and b            a or b                      not a           ( ... )

Anything else raises :class:`ValueError`, which keeps the assets inside what is tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""\s*(?:(?P<lparen>\()|(?P<rparen>\))|(?P<op>>=|<=|>|<|:)
        |(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<word>[^\s():<>"]+))""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``; ``value`` None for ``field : *`` (the field exists)."""

    field: str
    op: str
    value: str | None
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class Boolean:
    """``and`` / ``or`` of clauses, or ``not`` of one."""

    op: str
    clauses: tuple[Node, ...]


Node = Comparison | Boolean


def _tokens(query: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    query = query.rstrip()
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None or match.end() == position:
            raise ValueError(f"unsupported KQL at {position}: {query!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokens(query)
        self.at = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ValueError(f"KQL ends too early: {self.query!r}")
        self.at += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token is not None and token[0] == "word" and token[1].lower() == word:
            self.at += 1
            return True
        return False

    def parse(self) -> Node | None:
        if not self.tokens:
            return None
        node = self._or()
        if self._peek() is not None:
            raise ValueError(f"unexpected {self._peek()!r} in KQL {self.query!r}")
        return node

    def _or(self) -> Node:
        clauses = [self._and()]
        while self._keyword("or"):
            clauses.append(self._and())
        return clauses[0] if len(clauses) == 1 else Boolean("or", tuple(clauses))

    def _and(self) -> Node:
        clauses = [self._not()]
        while self._keyword("and"):
            clauses.append(self._not())
        return clauses[0] if len(clauses) == 1 else Boolean("and", tuple(clauses))

    def _not(self) -> Node:
        if self._keyword("not"):
            return Boolean("not", (self._not(),))
        kind, text = self._take()
        if kind == "lparen":
            node = self._or()
            if self._take()[0] != "rparen":
                raise ValueError(f"unbalanced parentheses in KQL {self.query!r}")
            return node
        if kind != "word":
            raise ValueError(f"expected a field name, got {text!r} in KQL {self.query!r}")
        op_kind, op = self._take()
        if op_kind != "op":
            raise ValueError(f"expected an operator after {text!r} in KQL {self.query!r}")
        value_kind, value = self._take()
        if value_kind == "quoted":
            return Comparison(text, op, value[1:-1].replace('\\"', '"'), quoted=True)
        if value_kind != "word":
            raise ValueError(f"expected a value after {text} {op} in KQL {self.query!r}")
        if value == "*" and op == ":":
            return Comparison(text, op, None)
        if "*" in value:
            raise ValueError(f"wildcard values are not supported: {self.query!r}")
        return Comparison(text, op, value)


def parse(query: str) -> Node | None:
    """The syntax tree of ``query`` (None for the empty query); ValueError outside the subset."""
    return _Parser(query).parse()


def fields(query: str) -> list[tuple[str, str]]:
    """Every (field, operator) the query compares, in order."""
    found: list[tuple[str, str]] = []

    def walk(node: Node | None) -> None:
        if isinstance(node, Comparison):
            found.append((node.field, node.op))
        elif isinstance(node, Boolean):
            for clause in node.clauses:
                walk(clause)

    walk(parse(query))
    return found


_RANGE = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def _value(text: str, quoted: bool) -> Any:
    if quoted:
        return text
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def to_es(query: str) -> dict[str, Any]:
    """The Elasticsearch query Kibana would run for ``query`` (``match_all`` when empty)."""

    def convert(node: Node) -> dict[str, Any]:
        if isinstance(node, Comparison):
            if node.value is None:
                return {"exists": {"field": node.field}}
            if node.op in _RANGE:
                return {"range": {node.field: {_RANGE[node.op]: _value(node.value, False)}}}
            # Kibana sends a match (phrase for quoted values): equality on keywords and
            # numbers, analysed search on text fields.
            kind = "match_phrase" if node.quoted else "match"
            return {kind: {node.field: _value(node.value, node.quoted)}}
        clauses = [convert(c) for c in node.clauses]
        if node.op == "and":
            return {"bool": {"filter": clauses}}
        if node.op == "or":
            return {"bool": {"should": clauses, "minimum_should_match": 1}}
        return {"bool": {"must_not": clauses}}

    tree = parse(query)
    return {"match_all": {}} if tree is None else convert(tree)
