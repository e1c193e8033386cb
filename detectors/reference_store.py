"""Stored references: the ``driftline.references`` table behind ``driftline reference set`` / ``list`` /
``show`` / ``delete`` and the collector's :class:`~driftline.detectors.stage.ReferenceWatch`."""

from __future__ import annotations

import dataclasses
import datetime as _dt
from typing import Any

from driftline.detectors.reference import Reference

__all__ = ["ReferenceStore", "ReferenceInfo"]


@dataclasses.dataclass(frozen=True)
class ReferenceInfo:
    """One line of ``driftline reference list``."""

    model: str
    model_version: str
    created_at: _dt.datetime
    source: str
    n_rows: int
    n_features: int


class ReferenceStore:
    """References in ClickHouse: ``save`` replaces, ``load``/``list``/``delete`` by model/version.

    ``client`` is a clickhouse-connect client on a store that :func:`driftline.collector.store.migrate`
    has prepared.
    """

    def __init__(self, client: Any) -> None:
        self._client = client

    def save(self, ref: Reference) -> None:
        created = _dt.datetime.now(_dt.timezone.utc)
        self._client.insert("driftline.references",
                            [[ref.model, ref.model_version, created, ref.source, ref.n_rows, ref.to_json(), 0]],
                            column_names=["model", "model_version", "created_at", "source", "n_rows",
                                          "profile", "is_deleted"])

    def load(self, model: str, version: str) -> Reference | None:
        rows = self._client.query(
            "SELECT profile FROM driftline.references FINAL WHERE model = {m:String} "
            "AND model_version = {v:String}", parameters={"m": model, "v": version}).result_rows
        return Reference.from_json(rows[0][0]) if rows else None

    def load_all(self, model: str | None = None) -> list[Reference]:
        sql = "SELECT profile FROM driftline.references FINAL"
        params: dict[str, Any] = {}
        if model:
            sql += " WHERE model = {m:String}"
            params["m"] = model
        sql += " ORDER BY model, model_version"
        return [Reference.from_json(r[0]) for r in self._client.query(sql, parameters=params).result_rows]

    def index(self) -> dict[tuple[str, str], _dt.datetime]:
        """When each stored (model, version) reference was saved (deleted ones left out): a light
        query, without the profiles, for the collector's poll (:class:`~driftline.detectors.stage.ReferenceWatch`)."""
        rows = self._client.query("SELECT model, model_version, created_at FROM driftline.references FINAL").result_rows
        return {(m, v): created for m, v, created in rows}

    def list(self, model: str | None = None) -> list[ReferenceInfo]:
        return [ReferenceInfo(r.model, r.model_version, _dt.datetime.fromisoformat(r.created_at)
                              if r.created_at else _dt.datetime.min, r.source, r.n_rows,
                              len(r.features)) for r in self.load_all(model)]

    def delete(self, model: str, version: str) -> bool:
        """Mark the reference deleted; return whether one existed."""
        if self.load(model, version) is None:
            return False
        self._client.insert("driftline.references",
                            [[model, version, _dt.datetime.now(_dt.timezone.utc), "", 0, "", 1]],
                            column_names=["model", "model_version", "created_at", "source", "n_rows",
                                          "profile", "is_deleted"])
        return True
