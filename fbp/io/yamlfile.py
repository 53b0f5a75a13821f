"""YAML as fbp reads it (configs, a run's ``config.yaml``, ``--set`` values): safe, and bounded in cost.

PyYAML's safe loader builds no objects from tags, but it still follows aliases: a few hundred bytes of nested
aliases (a "billion laughs") expand to billions of values once the tree is walked, and deep nesting overflows
Python's stack. Here a document is composed first, its expanded size and depth are measured on the node graph
(each shared node measured once), and it is built only when both are within limits.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple, Union
from pathlib import Path

import yaml

from ..errors import UsageError

MAX_CHARS = 4_000_000  # a config is a few KB; a run's config.yaml with a search space a few more
MAX_VALUES = 200_000  # scalars, lists and mappings once every alias is expanded
MAX_DEPTH = 64


def _measure(root: yaml.Node) -> Tuple[int, int]:
    """(expanded number of nodes, depth) of a composed document, each distinct node visited once."""
    measured: Dict[int, Tuple[int, int]] = {}
    stack = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in measured:
            continue
        if isinstance(node, yaml.ScalarNode):
            measured[key] = (1, 1)
            continue
        children = [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if not children_done:
            if len(stack) > 4 * MAX_DEPTH + len(children) + 1000 and len(stack) > 100_000:
                return MAX_VALUES + 1, MAX_DEPTH + 1
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in measured)
            continue
        size, depth = 1, 1
        for child in children:
            child_size, child_depth = measured.get(id(child), (1, 1))  # a node that contains itself counts once
            size, depth = min(size + child_size, MAX_VALUES + 1), max(depth, child_depth + 1)
        measured[key] = (size, depth)
    return measured[id(root)]


def load_yaml(text: str, source: Union[str, Path]) -> Any:
    """The value of one YAML document; UsageError naming ``source`` when it is not YAML or is too big or deep."""
    if len(text) > MAX_CHARS:
        raise UsageError(f"{source}: {len(text):,} characters is too large for a config (at most {MAX_CHARS:,})")
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size, depth = _measure(node)
        if depth > MAX_DEPTH:
            raise UsageError(f"{source}: nested more than {MAX_DEPTH} levels deep; not a config")
        if size > MAX_VALUES:
            raise UsageError(f"{source}: expands to more than {MAX_VALUES:,} values (nested aliases?); not a config")
        return loader.construct_document(node)
    except RecursionError:
        raise UsageError(f"{source}: nested too deeply; not a config") from None
    except yaml.YAMLError as error:
        first = " ".join(str(error).split())[:300]
        raise UsageError(f"{source} is not valid YAML: {first}") from None
    finally:
        loader.dispose()
