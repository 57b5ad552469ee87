"""YAML from places bgit does not control (a commit, a remote, a user's file), bounded.

PyYAML shares the node of an alias instead of copying it, so composing is linear in the
size of the text, but *constructing* Python objects (or walking the node graph) expands
every alias: a few hundred bytes of nested aliases ("billion laughs") become gigabytes.
:func:`compose_bounded` refuses text over ``max_bytes`` and a node graph that would expand
to more than ``max_nodes`` nodes, before anything is built.
"""

from __future__ import annotations

import yaml

from bgit.errors import BgitError

MAX_BYTES = 4 << 20
MAX_NODES = 200_000


class YamlLimitError(BgitError):
    """YAML over the size or alias-expansion limit, or malformed."""

    def __init__(self, what: str, reason: str):
        self.what, self.reason = what, reason
        super().__init__(f"{what}: {reason}")


def compose_bounded(text: str | bytes, what: str, *, max_bytes: int = MAX_BYTES,
                    max_nodes: int = MAX_NODES) -> yaml.Node | None:
    """``yaml.compose`` (safe loader) after checking size and expansion; ``what`` names the
    source in errors. YAML syntax errors propagate as ``yaml.YAMLError``."""
    size = len(text.encode("utf-8") if isinstance(text, str) else text)
    if size > max_bytes:
        raise YamlLimitError(what, f"YAML of {size} bytes is over the limit of {max_bytes}")
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        _check_expansion(root, what, max_nodes)
    return root


def load_bounded(text: str | bytes, what: str, *, max_bytes: int = MAX_BYTES,
                 max_nodes: int = MAX_NODES):
    """``yaml.safe_load`` of ``text`` within the limits; malformed YAML is a YamlLimitError
    naming ``what`` and the line."""
    try:
        root = compose_bounded(text, what, max_bytes=max_bytes, max_nodes=max_nodes)
        return None if root is None else yaml.SafeLoader("").construct_document(root)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise YamlLimitError(what, f"{where}{error.problem or error}") from None
    except yaml.YAMLError as error:
        raise YamlLimitError(what, str(error).splitlines()[0]) from None


def _check_expansion(root: yaml.Node, what: str, max_nodes: int) -> None:
    """Count nodes as construction would visit them (aliases expanded), stopping early.

    Nodes are counted per distinct (node, expanded count) using memoised subtree sizes, so
    the check itself is linear in the composed graph, never in the expansion."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:  # a recursive structure (&a [*a]) never ends once expanded
            raise YamlLimitError(what, "recursive YAML alias")
        on_path.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > max_nodes:
                raise YamlLimitError(what, f"YAML expands to more than {max_nodes} nodes (alias bomb?)")
        on_path.discard(key)
        sizes[key] = total
        return total

    size(root)
