"""Node and edge attributes of generic graph files (node-link JSON, GraphML, GEXF) as specs.

The rules, shared by every attribute-carrying format:

- label: the ``label`` attribute, else ``name``, else none (the key is shown);
- type: ``type`` ``"agent"`` makes an agent; ``"agent"``/``"knowledge"`` are consumed, any other
  ``type`` value stays in the metadata;
- metadata: every other attribute, made JSON-safe (non-finite floats become ``null``, other
  non-JSON values their ``str``);
- weight: the ``weight`` attribute, default 1, a positive finite number (a numeric string is
  accepted, as GraphML files often declare weights as strings).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from ..model import NodeSpec, NodeType

_TYPES = {NodeType.AGENT.value: NodeType.AGENT, NodeType.KNOWLEDGE.value: NodeType.KNOWLEDGE}


def json_safe(value: object) -> Any:
    """A copy of ``value`` that ``json.dumps`` writes as strict JSON."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        return [json_safe(v) for v in items]
    return str(value)


def node_spec(key: str, attrs: Mapping[str, Any]) -> NodeSpec:
    """A node spec from a node's attributes (see the module rules)."""
    rest = dict(attrs)
    label: str | None = None
    for name in ("label", "name"):
        if rest.get(name) is not None:
            label = str(rest.pop(name))
            break
    node_type = NodeType.KNOWLEDGE
    kind = rest.get("type")
    if isinstance(kind, str) and kind in _TYPES:
        node_type = _TYPES[kind]
        del rest["type"]
    metadata = {str(k): json_safe(v) for k, v in rest.items()}
    return NodeSpec(key=key, label=label, type=node_type, metadata=metadata)


def edge_weight(attrs: Mapping[str, Any]) -> float | None:
    """The ``weight`` attribute as a positive finite float (1 when absent); ``None`` if invalid."""
    raw = attrs.get("weight", 1.0)
    if isinstance(raw, bool):
        return None
    try:
        weight = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    return weight if math.isfinite(weight) and weight > 0 else None


def edge_type(attrs: Mapping[str, Any]) -> str | None:
    """The ``type`` attribute of an edge when it is a non-empty string, else ``None``."""
    kind = attrs.get("type")
    return kind if isinstance(kind, str) and kind else None
