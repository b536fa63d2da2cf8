"""Reading YAML that someone else wrote, in bounded time and memory.

``yaml.safe_load`` refuses to build Python objects, but it still expands aliases: a 479-byte
"billion laughs" document (nine anchors, each aliasing the previous one ten times) describes
10⁹ strings. PyYAML shares the aliased objects, so loading is cheap, but everything that walks
the result afterwards (the policy engine, JSON rendering) pays for the expanded tree: 3 GB and
a minute before this module existed. Kubernetes manifests do use anchors (``<<: *defaults``),
so aliases are not refused outright; instead the composer counts, for every alias it resolves,
how many nodes the alias stands for, and refuses the document once the aliases add more than
a small budget to it. A recursive alias (an anchor used inside itself) is refused too: the
objects it builds are cycles that no manifest needs.

Other costs are bounded as well: the file's size (:data:`MAX_YAML_BYTES`), and nesting
depth (a ``RecursionError`` in the composer becomes an :class:`UnsafeYaml`).
"""

from __future__ import annotations

from typing import Any, Final

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode
from yaml.resolver import Resolver

#: Aliases one document may use.
MAX_ALIASES: Final = 100
#: Nodes that aliases may add to one document, counted after expansion.
MAX_ALIAS_NODES: Final = 10_000
#: Bytes of YAML read from one file (the largest CRD bundles are a few MiB).
MAX_YAML_BYTES: Final = 32 << 20

ALIAS_FIX: Final = (
    "expand the anchors and aliases (e.g. `yq 'explode(.)' FILE`), or remove them; "
    f"modelward accepts at most {MAX_ALIASES} aliases adding at most {MAX_ALIAS_NODES} nodes "
    "per document"
)


class UnsafeYaml(yaml.YAMLError):
    """The YAML is well formed but would cost more to expand than modelward allows."""


def _loader_base() -> Any:
    """libyaml's parser for the events (5x faster than PyYAML's) under PyYAML's composer:
    ``CSafeLoader`` composes in C too, where aliases cannot be counted."""
    try:
        from yaml.cyaml import CParser  # type: ignore[attr-defined]
    except ImportError:  # PyYAML built without libyaml
        return yaml.SafeLoader

    class EventsInC(Composer, CParser, SafeConstructor, Resolver):
        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)

    return EventsInC


_Base: Any = _loader_base()


class _BoundedLoader(_Base):  # type: ignore[misc]
    """A safe loader whose composer counts alias expansions (see the module docstring)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._weights: dict[int, int] = {}
        self._aliases = 0
        self._alias_nodes = 0

    def compose_document(self) -> Node | None:
        # Budgets are per document: a multi-document file is many manifests.
        self._weights, self._aliases, self._alias_nodes = {}, 0, 0
        node: Node | None = super().compose_document()
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        alias = self.check_event(AliasEvent)
        where = _where(self.peek_event().start_mark) if alias else ""
        node: Node | None = super().compose_node(parent, index)
        if node is None:
            return None
        if alias:
            weight = self._weights.get(id(node))
            if weight is None:  # the anchor is still being composed: a cycle
                raise UnsafeYaml(f"recursive alias{where}")
            self._aliases += 1
            self._alias_nodes += weight
            if self._aliases > MAX_ALIASES or self._alias_nodes > MAX_ALIAS_NODES:
                raise UnsafeYaml(
                    f"aliases expand beyond modelward's budget ({self._aliases} aliases adding "
                    f"{self._alias_nodes} nodes){where}"
                )
            return node
        self._weights[id(node)] = 1 + sum(self._weights.get(id(c), 1) for c in _children(node))
        return node


def _where(mark: Mark | None) -> str:
    return "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"


def describe(exc: yaml.YAMLError) -> str:
    """One line for any YAML error (PyYAML's own messages span several, with a snippet)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        problem = exc.problem or exc.context or "invalid YAML"
        return f"{problem}{_where(exc.problem_mark)}"
    return " ".join(str(exc).split())


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_all(text: str) -> list[Any]:
    """Every document in ``text``, like ``yaml.safe_load_all``, within the budgets.

    Raises ``yaml.YAMLError`` for syntax errors and :class:`UnsafeYaml` (a subclass) for a
    document that exceeds a budget or nests too deeply.
    """
    if len(text) > MAX_YAML_BYTES:
        raise UnsafeYaml(f"larger than {MAX_YAML_BYTES >> 20} MiB")
    loader = _BoundedLoader(text)
    try:
        documents: list[Any] = []
        while loader.check_data():
            documents.append(loader.get_data())
        return documents
    except RecursionError:
        raise UnsafeYaml("nested too deeply") from None
    finally:
        loader.dispose()


def load(text: str) -> Any:
    """The single document in ``text`` (``None`` when empty), within the budgets."""
    documents = load_all(text)
    if len(documents) > 1:
        raise yaml.YAMLError(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None
