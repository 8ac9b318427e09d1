"""Geo and full-text query nodes (:mod:`parsectl.model.geo_text`) compiled to SQL, shared by both dialects.

The SQL compiler (:class:`parsectl.storage.sql.SQLCompiler`) mixes this in; each dialect supplies the
few primitives below: a GeoPoint column's latitude/longitude, the great-circle distance, a box and a
polygon test, the Polygon-contains-point test and the text match/score expressions. ``$nearSphere``
also orders the results nearest first (after any explicit order), and ``order=$score`` orders by
the text score, best first; the compiler records the nodes it saw for :meth:`geo_text_order`.

Numbers of a geo constraint are validated floats and are written into the SQL as literals; strings
(search terms, languages) are bound as parameters.
"""

from __future__ import annotations

import math
from typing import Any

from parsectl.model import geo_text
from parsectl.model.query import SortKey


def lit(value: float) -> str:
    """A validated, finite float as an SQL literal."""
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return repr(number)


def cap_bounds(point: geo_text.Point, radius: float) -> tuple[float, float, float, float] | None:
    """(south, west, north, east) degrees around a spherical cap of ``radius`` radians, or None when the
    cap reaches a pole or crosses the antimeridian (then no box prefilter is used)."""
    if radius >= math.pi / 2:
        return None
    deg = math.degrees(radius)
    south, north = point.latitude - deg, point.latitude + deg
    if south <= -90 or north >= 90:
        return None
    dlng = math.degrees(math.asin(min(1.0, math.sin(radius) / math.cos(math.radians(point.latitude)))))
    west, east = point.longitude - dlng, point.longitude + dlng
    if west < -180 or east > 180:
        return None
    # widen a hair so the prefilter never drops a point the exact test keeps
    pad = 1e-9
    return south - pad, west - pad, north + pad, east + pad


class GeoTextSQL:
    """Mixin for :class:`parsectl.storage.sql.SQLCompiler`."""

    FALSE: str
    TRUE: str

    # --- dialect primitives ------------------------------------------------------------------------------
    def geo_lat_lng(self, sql: str) -> tuple[str, str]:
        """SQL for the latitude and longitude of a GeoPoint column."""
        raise NotImplementedError

    def geo_distance(self, sql: str, point: geo_text.Point) -> str:
        """SQL for the angle (radians) between a GeoPoint column and ``point``."""
        raise NotImplementedError

    def geo_box(self, sql: str, south: float, west: float, north: float, east: float) -> str:
        lat, lng = self.geo_lat_lng(sql)
        return (f"({lat} BETWEEN {lit(south)} AND {lit(north)} AND {lng} BETWEEN {lit(west)} AND {lit(east)})")

    def geo_in_polygon(self, sql: str, vertices: list[tuple[float, float]]) -> str:
        raise NotImplementedError

    def polygon_contains(self, sql: str, point: geo_text.Point) -> str:
        raise NotImplementedError

    def text_match(self, sql: str, node: geo_text.TextSearch) -> str:
        raise NotImplementedError

    def text_score(self, sql: str, node: geo_text.TextSearch) -> str:
        raise NotImplementedError

    # --- nodes ----------------------------------------------------------------------------------------------
    def _geo_column(self, field: str, kind: str) -> str | None:
        col = self.column(field)  # type: ignore[attr-defined]
        return col.sql if col.kind == kind and not col.path else None

    def _near_nodes(self) -> list[geo_text.NearSphere]:
        if not hasattr(self, "_nears"):
            self._nears: list[geo_text.NearSphere] = []
        return self._nears

    def _text_nodes(self) -> list[geo_text.TextSearch]:
        if not hasattr(self, "_texts"):
            self._texts: list[geo_text.TextSearch] = []
        return self._texts

    def _within_distance(self, sql: str, point: geo_text.Point, radius: float | None) -> str:
        if radius is None or not math.isfinite(radius) or radius >= math.pi:
            return f"({sql} IS NOT NULL)"
        bounds = cap_bounds(point, radius)
        prefilter = (self.geo_box(sql, *bounds) + " AND ") if bounds else ""
        return f"({sql} IS NOT NULL AND {prefilter}{self.geo_distance(sql, point)} <= {lit(radius)})"

    def _NearSphere(self, node: geo_text.NearSphere) -> str:
        sql = self._geo_column(node.field, "GeoPoint")
        if sql is None:
            return self.FALSE
        self._near_nodes().append(node)
        return self._within_distance(sql, node.point, node.max_distance)

    def _WithinSphere(self, node: geo_text.WithinSphere) -> str:
        sql = self._geo_column(node.field, "GeoPoint")
        if sql is None:
            return self.FALSE
        return self._within_distance(sql, node.center, node.radius)

    def _WithinBox(self, node: geo_text.WithinBox) -> str:
        sql = self._geo_column(node.field, "GeoPoint")
        if sql is None:
            return self.FALSE
        return self.geo_box(sql, node.south, node.west, node.north, node.east)

    def _WithinPolygon(self, node: geo_text.WithinPolygon) -> str:
        sql = self._geo_column(node.field, "GeoPoint")
        if sql is None:
            return self.FALSE
        xs, ys = [x for x, _ in node.vertices], [y for _, y in node.vertices]
        prefilter = self.geo_box(sql, min(ys), min(xs), max(ys), max(xs))  # the polygon's bounding box
        return f"({prefilter} AND {self.geo_in_polygon(sql, node.vertices)})"

    def _GeoIntersects(self, node: geo_text.GeoIntersects) -> str:
        sql = self._geo_column(node.field, "Polygon")
        if sql is None:
            return self.FALSE
        return self.polygon_contains(sql, node.point)

    def _TextSearch(self, node: geo_text.TextSearch) -> str:
        sql = self._geo_column(node.field, "String")
        if sql is None or not (node.words or node.phrases):
            return self.FALSE
        self._text_nodes().append(node)
        return self.text_match(sql, node)

    # --- ordering and the score column ---------------------------------------------------------------------
    def score_sql(self) -> str | None:
        """The text score of the first ``$text`` constraint compiled (None without one)."""
        texts = self._text_nodes()
        if not texts:
            return None
        sql = self._geo_column(texts[0].field, "String")
        return self.text_score(sql, texts[0]) if sql else None

    def score_select(self) -> tuple[str, list[Any]]:
        """``, <score> AS "$score"`` for the select list and its parameters ('' without ``$text``)."""
        saved = self.params  # type: ignore[has-type]
        self.params = []
        try:
            score = self.score_sql()
            return (f', {score} AS "$score"' if score else ""), self.params
        finally:
            self.params = saved

    def geo_text_order(self, order: list[SortKey]) -> tuple[dict[int, str], list[str]]:
        """ORDER BY parts for ``$score`` keys (by position in ``order``) and the trailing distance sort."""
        scores: dict[int, str] = {}
        for i, key in enumerate(order):
            if key.field == "$score":
                score = self.score_sql()
                if score:
                    scores[i] = f"{score} DESC"
        trailing: list[str] = []
        nears = self._near_nodes()
        if nears:
            sql = self._geo_column(nears[0].field, "GeoPoint")
            if sql:
                trailing.append(f"{self.geo_distance(sql, nears[0].point)} ASC")
        return scores, trailing
