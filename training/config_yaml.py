"""The YAML reader behind config files and ``key=value`` overrides: safe, strict and bounded.

What ``yaml.safe_load`` does, with the changes a config needs:

- a key given twice in one mapping is an error, not the last one winning;
- a plain (unquoted) scalar that YAML 1.1 leaves as text although it is a number (``2e-5``, ``inf``)
  comes back as :class:`PlainNumber`, so a number key can take it while a quoted ``"20"`` stays text;
- a document may hold at most :data:`MAX_VALUES` values once its aliases are expanded (an "alias bomb"
  of nested anchors is a few lines that expand to billions) and nest at most :data:`MAX_DEPTH` deep;
- an integer too long for Python to read is a YAML error, not a traceback; merge keys (``<<``) work as in YAML.

Every problem is a :class:`yaml.YAMLError` with a short ``problem`` (and a ``problem_mark`` where known).

Example:
    >>> read_yaml("train: {learning_rate: 2e-5, epochs: '20'}")
    {'train': {'learning_rate': '2e-5', 'epochs': '20'}}
    >>> [type(v).__name__ for v in read_yaml("train: {learning_rate: 2e-5, epochs: '20'}")["train"].values()]
    ['PlainNumber', 'str']
"""

from __future__ import annotations

import reprlib
from collections.abc import Hashable
from typing import Any

import yaml

MAX_VALUES = 10_000
"""Values (scalars, lists, mappings) a document may expand to; a config holds a few dozen."""
MAX_DEPTH = 100
"""Nesting a document may reach; Python's recursion limit would end deeper ones with a traceback."""

_STR_TAG = "tag:yaml.org,2002:str"
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class PlainNumber(str):
    """An unquoted scalar that YAML 1.1 reads as text but Python reads as a number (``2e-5``, ``1e3``, ``inf``).

    Number keys accept it; a quoted number is a plain ``str`` and they refuse it.

    Example:
        >>> float(PlainNumber("2e-5"))
        2e-05
    """


def reads_as_number(text: str) -> bool:
    """Whether ``float()`` reads ``text`` (ASCII only: ``float`` also reads Persian digits, YAML does not).

    Example:
        >>> reads_as_number("2e-5"), reads_as_number("۲۰"), reads_as_number("fast")
        (True, False, False)
    """
    try:
        float(text)
    except ValueError:
        return False
    return text.isascii()


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 4, 4, 4
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 40


def shorten(text: str, width: int = 80) -> str:
    """``text`` cut to at most ``width`` characters, marked with ``...`` where cut.

    Example:
        >>> shorten("x" * 100, 10)
        'xxxxxxx...'
    """
    return text if len(text) <= width else text[: width - 3] + "..."


def shown(value: Any, width: int = 80) -> str:
    """``repr(value)`` of bounded length, for an error message: whatever the user wrote stays one short line.

    :mod:`reprlib` stops at a few items and two levels, so even a value that expands to billions is
    never walked whole. Text keeps its start, where an override names its key.

    Example:
        >>> shown(list(range(100)))
        '[0, 1, 2, 3, ...]'
        >>> shown("train.epochs=" + "9" * 500, 30)
        "'train.epochs=9999999999999..."
    """
    try:
        text = repr(value[:width]) if isinstance(value, str) else _REPR.repr(value)
    except ValueError:  # an int past Python's digit limit cannot even be printed
        text = f"<{type(value).__name__}>"
    return shorten(text, width)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the config's rules (see the module docstring); use it through :func:`read_yaml`."""

    _depth = 0

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        check_size(node)  # before construction: constructing is cheap, but anything walking the result is not
        return node

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"values nested over {MAX_DEPTH} deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:  # `<<: *defaults`: merged keys may be overridden, as YAML says
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                raise _constructor_error("a list or mapping cannot be a key", key_node)
            if key in seen:
                raise _constructor_error(f"the key {shown(key)} appears twice in one section", key_node)
            seen.add(key)
        return super().construct_mapping(node, deep)

    def construct_plain_str(self, node: yaml.ScalarNode) -> str:
        value = self.construct_scalar(node)
        return PlainNumber(value) if node.style is None and reads_as_number(value) else value

    def construct_bounded_int(self, node: yaml.ScalarNode) -> int:
        try:
            return self.construct_yaml_int(node)
        except ValueError:  # Python refuses to read integers of over 4,300 digits
            raise _constructor_error(f"an integer of {len(node.value):,} characters is too long", node) from None


StrictLoader.add_constructor(_STR_TAG, StrictLoader.construct_plain_str)
StrictLoader.add_constructor(_INT_TAG, StrictLoader.construct_bounded_int)


def _constructor_error(problem: str, node: yaml.Node) -> yaml.constructor.ConstructorError:
    return yaml.constructor.ConstructorError(None, None, problem, node.start_mark)


def read_yaml(text: str) -> Any:
    """``text`` read as one YAML document under :class:`StrictLoader`'s rules.

    Example:
        >>> read_yaml("a: &x [1, 2]\\nb: *x")
        {'a': [1, 2], 'b': [1, 2]}
        >>> read_yaml("a: 1\\na: 2")
        Traceback (most recent call last):
        ...
        yaml.constructor.ConstructorError: the key 'a' appears twice in one section
          in "<unicode string>", line 2, column 1:
            a: 2
            ^
    """
    return yaml.load(text, Loader=StrictLoader)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_sizes(root: yaml.Node) -> dict[int, int]:
    """Each node's value count with every alias expanded (by ``id``), capped at ``MAX_VALUES + 1``.

    Each node is visited once, however often aliases repeat it, so a bomb costs as little as its text;
    an alias inside its own anchor (``&a [*a]``) expands forever and counts as too many.

    Example:
        >>> root = yaml.compose("a: &x [1, 2]\\nb: [*x, *x]")
        >>> expanded_sizes(root)[id(root)]  # the mapping, 2 keys, 4 lists (x three times, b), 6 numbers
        13
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # entered, children not yet summed: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # iterative: aliases can nest deeper than Python's recursion limit
        node, children_done = stack.pop()
        if children_done:
            total = 1 + sum(sizes[id(child)] for child in _children(node))
            sizes[id(node)] = min(total, MAX_VALUES + 1)
            open_nodes.discard(id(node))
        elif id(node) in open_nodes:
            sizes[id(node)] = MAX_VALUES + 1
        elif id(node) not in sizes:
            open_nodes.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))
    return sizes


def check_size(root: yaml.Node) -> None:
    """Raise a YAML error naming where ``root`` expands past :data:`MAX_VALUES` values, if it does.

    Example:
        >>> bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\\n"
        >>> bomb += "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\\n"  # 1,111 values
        >>> try:
        ...     check_size(yaml.compose(bomb + "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]"))
        ... except yaml.YAMLError as error:
        ...     print(error.problem, "- line", error.problem_mark.line + 1)
        d: over 10,000 values once aliases are expanded (a config needs a few dozen) - line 4
    """
    sizes = expanded_sizes(root)
    if sizes[id(root)] <= MAX_VALUES:
        return
    path, node = _largest_part(root, sizes)
    where = f"{path}: " if path else ""
    problem = f"{where}over {MAX_VALUES:,} values once aliases are expanded (a config needs a few dozen)"
    raise yaml.composer.ComposerError(None, None, problem, node.start_mark)


def _largest_part(root: yaml.Node, sizes: dict[int, int]) -> tuple[str, yaml.Node]:
    """The dotted key of the innermost mapping value still too large on its own, and its node."""
    path, node, visited = [], root, set()
    while isinstance(node, yaml.MappingNode) and id(node) not in visited:
        visited.add(id(node))
        big = [(k, v) for k, v in node.value if sizes[id(v)] > MAX_VALUES]
        if not big or not isinstance(big[0][0], yaml.ScalarNode):
            break
        path.append(shorten(str(big[0][0].value), 40))
        node = big[0][1]
    return ".".join(path), node
