"""The graph model and the sources it is loaded from."""

from .model import Edge, EdgeSpec, Graph, GraphData, GraphError, NodeSpec, NodeType

__all__ = ["Edge", "EdgeSpec", "Graph", "GraphData", "GraphError", "NodeSpec", "NodeType"]
