"""Typed, durable, shared settings: the schema, the SQLite store and the service (§5)."""

from .schema import FIXED_PATH_IDS, SCHEMA_VERSION, Schema, Setting, build_schema
from .service import ChangeSet, SettingsError, SettingsService, convert, from_json
from .store import SettingsStore, StoreError

__all__ = ["FIXED_PATH_IDS", "SCHEMA_VERSION", "ChangeSet", "Schema", "Setting",
           "SettingsError", "SettingsService", "SettingsStore", "StoreError", "build_schema",
           "convert", "from_json"]
