"""The tests' redis-server: the one the bench starts (``graphwire.bench.redis_server``)."""

from graphwire.bench.redis_server import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
