"""lib.adapters: trained LoRA adapters registered under unique names (the folders stay where they are)."""
from __future__ import annotations

import json
import os
from typing import Any

from ..types import Adapter, LibraryError, NotFound, now
from .common import Store


class AdapterStore(Store):
    _SQL = "SELECT id, name, path, base_model, base_revision, manifest, created_at FROM adapters"

    def register(self, name: str, path: str | os.PathLike, *, base_model: str,
                 base_revision: str | None = None, manifest: dict[str, Any] | None = None,
                 replace: bool = False) -> "Adapter":
        """Record a trained LoRA adapter (folder with adapter_model.safetensors) under a unique name."""
        name = name.strip()
        if not name:
            raise LibraryError("an adapter needs a name")
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM adapters WHERE name = ?", (name,)).fetchone():
                if not replace:
                    raise LibraryError(f"there is already an adapter called {name!r}")
                self.conn.execute("DELETE FROM adapters WHERE name = ?", (name,))
            self.conn.execute(
                "INSERT INTO adapters (name, path, base_model, base_revision, manifest, created_at)"
                " VALUES (?,?,?,?,?,?)",
                (name, os.fspath(path), base_model, base_revision,
                 json.dumps(manifest or {}, ensure_ascii=False), now()))
        return self.get(name)

    @staticmethod
    def _row(r) -> "Adapter":
        return Adapter(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6])

    def all(self) -> list["Adapter"]:
        return [self._row(r) for r in self.conn.execute(self._SQL + " ORDER BY created_at, id")]

    def get(self, name_or_id: str | int) -> "Adapter":
        if isinstance(name_or_id, int) or (isinstance(name_or_id, str) and name_or_id.isdecimal()
                                           and int(name_or_id) < 2 ** 63):  # else a name, not an SQLite id
            row = self.conn.execute(self._SQL + " WHERE id = ? OR name = ?",
                                    (int(name_or_id), str(name_or_id))).fetchone()
        else:
            row = self.conn.execute(self._SQL + " WHERE name = ?", (name_or_id,)).fetchone()
        if row is None:
            raise NotFound(f"no adapter called {name_or_id!r} (see `repic-train adapters list`)")
        return self._row(row)

    def update_manifest(self, name: str, manifest: dict[str, Any]) -> None:
        a = self.get(name)
        with self.transaction():
            self.conn.execute("UPDATE adapters SET manifest = ? WHERE id = ?",
                              (json.dumps(manifest, ensure_ascii=False), a.id))

    def remove(self, name: str) -> "Adapter":
        """Forget an adapter (its folder is left on disk: the caller decides whether to delete it)."""
        a = self.get(name)
        with self.transaction():
            self.conn.execute("DELETE FROM adapters WHERE id = ?", (a.id,))
        return a
