"""Read a policy's YAML within bounds: every problem is a position and a message, never an exception.

What is refused, each with its line and column: a file over :data:`MAX_POLICY_BYTES`, control
characters, nesting deeper than :data:`MAX_DEPTH`, aliases that expand past :data:`MAX_NODES` nodes
(alias bombs) or refer to themselves, tags outside the core schema (``!!timestamp``, ``!!binary``,
``!!python/...``, local ``!tags``), a core tag on a value it does not fit (``!!bool maybe``), and
duplicate keys. Dates stay strings (the core schema has no timestamps).

>>> load("a: 1\\nb: [x, y]\\n")[1:]
({'a': 1, 'b': ['x', 'y']}, [])
>>> load("a: 1\\na: 2\\n")[2]
[(2, 1, "duplicate key 'a' (first at line 1)")]
>>> load("a: &x [*x]\\n")[2]
[(1, 4, 'an alias refers to the node that contains it (a recursive alias)')]
>>> load("d: 2026-01-01\\n")[1]
{'d': '2026-01-01'}
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_POLICY_BYTES = 256 * 1024
"""Bytes of one policy file: the largest real policy is a few kB."""

MAX_DEPTH = 64
"""Nesting of mappings and lists: a policy needs about six levels."""

MAX_NODES = 20_000
"""Nodes of the document once aliases are expanded: an alias bomb of nine levels needs 10^9."""

CORE_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq"))
"""The YAML core schema's tags: the only ones a policy may use."""

_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f\ud800-\udfff\ufffe\uffff]")

Problem = tuple[int, int, str]
"""(line, column, message), both 1-based."""


class CoreLoader(yaml.SafeLoader):
    """The safe loader without implicit timestamps: what the core schema reads."""


CoreLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


class FastCoreLoader(getattr(yaml, "CSafeLoader", CoreLoader)):  # type: ignore[misc]
    """:class:`CoreLoader` on libyaml's parser (when PyYAML has it): a policy parses in ~1/4 of the
    time. Only good documents take it: any YAML error is read again by :class:`CoreLoader`, whose
    messages and positions are the ones reported."""


FastCoreLoader.yaml_implicit_resolvers = CoreLoader.yaml_implicit_resolvers


def _fits(tag: str, value: str) -> bool:
    """Whether a scalar with explicit core ``tag`` reads as that type."""
    if tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"):
        return True
    resolvers = CoreLoader.yaml_implicit_resolvers.get(value[:1], [])
    return any(t == tag and regexp.match(value) for t, regexp in resolvers)


def _at(mark: Any) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)


def check_text(text: str) -> list[Problem]:
    """Size and control characters: what must hold before a parser sees the text."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        return [(1, 1, f"the file has {size} bytes, over the limit of {MAX_POLICY_BYTES} for a policy")]
    m = _CONTROL.search(text)
    if m is None:
        return []
    line = text.count("\n", 0, m.start()) + 1
    col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
    return [(line, col, f"control character U+{ord(m.group()):04X} is not allowed in YAML")]


def _events(text: str, loader: type[yaml.SafeLoader] = CoreLoader) -> list[Problem]:
    """Depth, tags and tagged values, from the parser's events (no tree is built yet)."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return [(*_at(event.start_mark), f"nesting deeper than {MAX_DEPTH} levels")]
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        tag = getattr(event, "tag", None)
        if tag is None or tag == "!" or isinstance(event, yaml.AliasEvent):
            continue
        if isinstance(event, yaml.ScalarEvent) and any(event.implicit):
            continue  # a plain or quoted scalar without a tag
        full = tag
        if full not in CORE_TAGS:
            allowed = ", ".join("!!" + t.rsplit(":", 1)[1] for t in sorted(CORE_TAGS))
            shown = tag.replace("tag:yaml.org,2002:", "!!")[:60]
            return [(*_at(event.start_mark), f"YAML tag {shown} is not allowed (core schema only: {allowed})")]
        if isinstance(event, yaml.ScalarEvent) and not _fits(full, event.value):
            kind = full.rsplit(":", 1)[1]
            return [(*_at(event.start_mark), f"{event.value[:40]!r} is not a valid !!{kind}")]
    return []


def _expanded(root: yaml.Node) -> list[Problem]:
    """The node count with aliases expanded (iteratively, memoized), refusing cycles and bombs."""
    size: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            active.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(c)] for c in children)
            if size[key] > MAX_NODES:
                return [
                    (*_at(node.start_mark), f"aliases expand this document past {MAX_NODES} nodes (an alias bomb?)")
                ]
            continue
        if key in size:
            continue
        if key in active:
            return [(*_at(node.start_mark), "an alias refers to the node that contains it (a recursive alias)")]
        active.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in active:
                return [(*_at(child.start_mark), "an alias refers to the node that contains it (a recursive alias)")]
            if id(child) not in size:
                stack.append((child, False))
    return []


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _duplicates(root: yaml.Node) -> list[Problem]:
    out: list[Problem] = []
    seen_nodes: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, int] = {}
            for k, _ in node.value:
                if isinstance(k, yaml.ScalarNode):
                    name = (k.tag, k.value)
                    if name in first:
                        out.append((*_at(k.start_mark), f"duplicate key {k.value!r} (first at line {first[name]})"))
                    else:
                        first[name] = k.start_mark.line + 1
        stack.extend(_children(node))
    return sorted(out)


def load(text: str) -> tuple[yaml.Node | None, Any, list[Problem]]:
    """``(node, data, [])`` for a good document (node and data None when it is empty), else
    ``(None, None, problems)``."""
    problems = check_text(text)
    if problems:
        return None, None, problems
    try:
        try:
            problems = _events(text, FastCoreLoader)
            node = None if problems else yaml.compose(text, Loader=FastCoreLoader)
        except yaml.YAMLError:  # the pure-Python parser says what is wrong, and where
            problems = _events(text)
            node = None if problems else yaml.compose(text, Loader=CoreLoader)
        if problems:
            return None, None, problems
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        return None, None, [(*_at(mark), f"YAML: {e.problem or e.context}")]
    except yaml.YAMLError as e:
        return None, None, [(1, 1, f"YAML: {e}")]
    if node is None:
        return None, None, []
    problems = _expanded(node) or _duplicates(node)
    if problems:
        return None, None, problems
    try:
        data = CoreLoader("").construct_document(node)
    except (yaml.YAMLError, ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        mark = getattr(e, "problem_mark", None) or node.start_mark
        return None, None, [(*_at(mark), f"YAML: cannot read the document: {e}")]
    return node, data, []
