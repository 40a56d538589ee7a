"""A fake Plausible on loopback, built from docs/upstreams.md#plausible-analytics, with fault switches.

Its data is a small table of daily and hourly visitors/pageviews; it answers v2 (omitting empty
buckets) and v1 (zero-filling them) from that table, so the two generations can be compared.
Goal conversions have a daily table of their own, answered as Plausible does: goal breakdowns
(v2 ``event:goal``, optionally x ``time:week`` or ``time:day``; v1 ``property=event:goal``) omit
goals without conversions, v1's timeseries filtered on a goal zero-fills its days, and an ``is``
filter on a goal the site does not have is a 400.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from aiohttp import web

API_KEY = "test-key-5f1c9a"
SITE_ID = "backstage.fawkes.idp"
GOAL = "event:goal"
WEEK = "time:week"
DAY = "time:day"


@dataclass
class FakePlausible:
    today: date
    versions: tuple[str, ...] = ("v1", "v2")
    fault: str | None = None  # 401 | 429 | 500html | truncated | hang | wrong_shape
    daily: dict[date, tuple[int, int]] = field(default_factory=dict)  # day -> (visitors, pageviews)
    hourly: dict[datetime, tuple[int, int]] = field(default_factory=dict)  # naive hour -> (visitors, pageviews)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    realtime: int = 21
    # goal -> day -> (visitors, events); None: the default goals below.
    goals: dict[str, dict[date, tuple[int, int]]] | None = None
    # Goals configured in Plausible besides those with conversions (never completed).
    idle_goals: set[str] = field(default_factory=lambda: {"Configure Monitoring"})

    def __post_init__(self) -> None:
        if not self.daily:
            # Every third day has no traffic at all: v2 omits those buckets, v1 zero-fills them.
            for back in range(120):
                day = self.today - timedelta(days=back)
                if back % 3 != 1:
                    self.daily[day] = (10 + back % 7, 30 + 2 * (back % 5))
        if not self.hourly:
            for back in range(48):
                hour = datetime.combine(self.today, datetime.min.time()) + timedelta(hours=23 - back)
                if back % 4 != 0:
                    self.hourly[hour] = (2 + back % 3, 5 + back % 2)
        if self.goals is None:
            # Conversions only on days with traffic: one goal rising, one falling, one flat, one too
            # thin for a trend; "Configure Monitoring" (an idle goal) is configured but never completed.
            self.goals = defaultdict(dict)
            for day in self.daily:
                back = (self.today - day).days
                self.goals["Deploy Application"][day] = (1 + (120 - back) // 15, 2 + (120 - back) // 15 * 2)
                self.goals["Create Service"][day] = (1 + back // 15, 3 + back // 15)
                self.goals["View Documentation"][day] = (4, 9)
                if back % 4 == 0:
                    self.goals["Run Pipeline"][day] = (1, 1)
            self.goals = dict(self.goals)

    @property
    def known_goals(self) -> set[str]:
        return set(self.goals) | self.idle_goals

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/api/v2/query", self.v2)
        app.router.add_get("/api/v1/stats/{endpoint:.*}", self.v1)
        return app

    async def _fault(self) -> web.StreamResponse | None:
        if self.fault == "hang":
            await asyncio.sleep(30)
        if self.fault == "401":
            return web.json_response({"error": "Invalid API key or site ID. Please make sure you're using a valid API "
                                               "key with access to the site you've requested."}, status=401)
        if self.fault == "429":
            return web.json_response({"error": "Too many API requests in the last hour"}, status=429)
        if self.fault == "500html":
            return web.Response(text="<html><body><h1>502 Bad Gateway</h1></body></html>", status=502,
                                content_type="text/html")
        if self.fault == "truncated":
            return web.Response(text='{"results": [{"metrics": [94', content_type="application/json")
        if self.fault == "wrong_shape":
            return web.json_response({"results": {"visitors": 3}})
        return None

    def _authorised(self, request: web.Request, site_id: str | None) -> bool:
        return request.headers.get("Authorization") == f"Bearer {API_KEY}" and site_id == SITE_ID

    # -- v2 ------------------------------------------------------------------------------------

    async def v2(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(("POST", "/api/v2/query", body))
        if "v2" not in self.versions:
            return web.Response(status=404, text="Not found")
        fault = await self._fault()
        if fault is not None:
            return fault
        if not self._authorised(request, body.get("site_id")):
            return web.json_response({"error": "Invalid API key or site ID."}, status=401)
        unknown = set(body) - {"site_id", "metrics", "date_range", "dimensions", "filters", "order_by",
                               "include", "pagination"}
        if unknown:
            return web.json_response({"error": f"Invalid request body: unknown key {sorted(unknown)[0]}"}, status=400)
        metrics, dims = body["metrics"], body.get("dimensions", [])
        if GOAL in dims or WEEK in dims or body.get("filters"):
            return self._v2_goals_and_weeks(body)
        rows = self._rows(body["date_range"], dims)
        if not dims:
            totals = self._totals(rows)
            return web.json_response({"results": [{"metrics": [totals.get(m, 0) for m in metrics], "dimensions": []}],
                                      "meta": {}, "query": body})
        if dims[0] in ("event:page", "visit:source"):
            names = ["/", "/catalog", "/docs"] if dims[0] == "event:page" else ["Direct / None", "GitHub", "Slack"]
            total = self._totals(rows)
            results = [{"dimensions": [name], "metrics": [total.get(m, 0) // (i + 1) for m in metrics]}
                       for i, name in enumerate(names)]
            return web.json_response({"results": results, "meta": {}, "query": body})
        fmt = "%Y-%m-%d %H:00:00" if dims[0] == "time:hour" else "%Y-%m-%d"
        results = [{"dimensions": [key.strftime(fmt)], "metrics": [value[m] for m in metrics]}
                   for key, value in rows]  # empty buckets omitted, as Plausible v2 does
        return web.json_response({"results": results, "meta": {}, "query": body})

    def _rows(self, date_range: Any, dims: list[str]) -> list[tuple[Any, dict[str, int]]]:
        if date_range in ("all", "day"):
            first = datetime(2000, 1, 1) if date_range == "all" else datetime.combine(self.today, datetime.min.time())
            start, end = first, datetime.combine(self.today, datetime.max.time())
        else:
            start, end = (datetime.fromisoformat(v).replace(tzinfo=None) for v in date_range)
            if len(date_range[1]) == 10:  # a date: the whole day
                end = end + timedelta(days=1) - timedelta(microseconds=1)
        hourly = any(d == "time:hour" for d in dims) or (isinstance(date_range, list) and len(date_range[0]) > 10)
        table = self.hourly if hourly else {datetime.combine(d, datetime.min.time()): v for d, v in self.daily.items()}
        out = []
        for key in sorted(table):
            bucket_end = key + (timedelta(hours=1) if hourly else timedelta(days=1))
            if bucket_end > start and key <= end:
                visitors, pageviews = table[key]
                out.append((key, {"visitors": visitors, "pageviews": pageviews, "visits": visitors + 1,
                                  "events": pageviews, "views_per_visit": 2.5, "bounce_rate": 42.5,
                                  "visit_duration": 86}))
        return out

    @staticmethod
    def _totals(rows: list[tuple[Any, dict[str, int]]]) -> dict[str, float]:
        totals = {m: sum(r[m] for _, r in rows) for m in ("visitors", "pageviews", "visits", "events")}
        return totals | {"views_per_visit": 2.5, "bounce_rate": 42.5 if rows else 0, "visit_duration": 86}

    # -- v1 ------------------------------------------------------------------------------------

    async def v1(self, request: web.Request) -> web.StreamResponse:
        endpoint, query = request.match_info["endpoint"], dict(request.query)
        self.requests.append(("GET", f"/api/v1/stats/{endpoint}", query))
        fault = await self._fault()
        if fault is not None:
            return fault
        if not self._authorised(request, query.get("site_id")):
            return web.json_response({"error": "Invalid API key or site ID."}, status=401)
        if endpoint == "realtime/visitors":
            return web.json_response(self.realtime)
        if query.get("property") == GOAL or "filters" in query:
            return self._v1_goals(endpoint, query)
        metrics = query["metrics"].split(",")
        if query["period"] == "day":
            day = date.fromisoformat(query["date"])
            rows = [(datetime.combine(day, datetime.min.time()) + timedelta(hours=h)) for h in range(24)]
            points = [{"date": h.strftime("%Y-%m-%d %H:00:00"),
                       **self._v1_values(self.hourly.get(h), metrics)} for h in rows]
            span = [(h, self.hourly[h]) for h in rows if h in self.hourly]
        else:
            first, last = (date.fromisoformat(v) for v in query["date"].split(","))
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            points = [{"date": d.isoformat(), **self._v1_values(self.daily.get(d), metrics)} for d in days]
            span = [(d, self.daily[d]) for d in days if d in self.daily]
        if endpoint == "timeseries":
            return web.json_response({"results": points})  # zero-filled, visit_duration null when empty
        totals = self._totals([(k, {"visitors": v[0], "pageviews": v[1], "visits": v[0] + 1, "events": v[1]})
                               for k, v in span])
        if endpoint == "aggregate":
            return web.json_response({"results": {m: {"value": totals.get(m, 0)} for m in metrics}})
        key = {"event:page": "page", "visit:source": "source"}[query["property"]]
        names = ["/", "/catalog", "/docs"] if key == "page" else ["Direct / None", "GitHub", "Slack"]
        return web.json_response({"results": [{key: name, **{m: int(totals.get(m, 0)) // (i + 1) for m in metrics}}
                                              for i, name in enumerate(names)]})

    @staticmethod
    def _v1_values(value: tuple[int, int] | None, metrics: list[str]) -> dict[str, Any]:
        visitors, pageviews = value or (0, 0)
        known = {"visitors": visitors, "pageviews": pageviews, "visit_duration": 86 if value else None}
        return {m: known.get(m, 0) for m in metrics}

    # -- goals and weeks -----------------------------------------------------------------------

    def _v2_goals_and_weeks(self, body: dict[str, Any]) -> web.Response:
        metrics, dims = body["metrics"], body.get("dimensions", [])
        first, last = self._days(body["date_range"])
        names = None
        for condition in body.get("filters", []):
            if len(condition) != 3:  # and/or/not/has_done: beyond this fake, say so rather than crash
                return web.json_response({"error": f"fake Plausible: unsupported filter {condition!r}"}, status=400)
            op, dimension, values = condition
            if dimension == GOAL and op == "is":
                if (unknown := self._unknown_goal_response(values)) is not None:
                    return unknown
                names = set(values)
        if dims == [WEEK]:  # site visitors by week (labels: each week's Monday, or the range start)
            weeks: dict[str, int] = defaultdict(int)
            for day, (visitors, _) in self.daily.items():
                if first <= day <= last:
                    weeks[self._week_label(day, first)] += visitors
            rows = [{"dimensions": [week], "metrics": [weeks[week] if m == "visitors" else 0 for m in metrics]}
                    for week in sorted(weeks)]
        elif dims == [GOAL]:
            rows = [{"dimensions": [goal], "metrics": [uses.get(m, 0) for m in metrics]}
                    for goal, uses in self._goal_uses(first, last, names).items()]
        elif dims == [GOAL, DAY]:  # Plausible omits days without conversions
            rows = [{"dimensions": [goal, day.isoformat()], "metrics": [dict(zip(("visitors", "events"), uses))[m]
                                                                       for m in metrics]}
                    for goal, days in self.goals.items() for day, uses in sorted(days.items())
                    if first <= day <= last and uses[0]]
            page = body.get("pagination", {"limit": 10_000, "offset": 0})
            rows = rows[page["offset"]:page["offset"] + page["limit"]]
        elif dims == [GOAL, WEEK]:
            rows = []
            for goal, days in self.goals.items():
                weekly: dict[str, dict[str, int]] = defaultdict(lambda: {"visitors": 0, "events": 0})
                for day, (visitors, events) in days.items():
                    if first <= day <= last:
                        weekly[self._week_label(day, first)]["visitors"] += visitors
                        weekly[self._week_label(day, first)]["events"] += events
                rows += [{"dimensions": [goal, week], "metrics": [uses.get(m, 0) for m in metrics]}
                         for week, uses in sorted(weekly.items())]
        else:  # an aggregate filtered on goals
            uses = self._goal_uses(first, last, names).values()
            rows = [{"dimensions": [], "metrics": [sum(u.get(m, 0) for u in uses) for m in metrics]}]
        return web.json_response({"results": rows, "meta": {}, "query": body})

    def _v1_goals(self, endpoint: str, query: dict[str, str]) -> web.Response:
        metrics, names = query["metrics"].split(","), None
        if "filters" in query:
            dimension, _, raw = query["filters"].partition("==")
            values = [v.replace("\\|", "|") for v in re.split(r"(?<!\\)\|", raw)]
            if dimension == GOAL:
                if (unknown := self._unknown_goal_response(values)) is not None:
                    return unknown
                names = set(values)
        if query["period"] == "day":
            first = last = self.today
        else:
            first, last = (date.fromisoformat(v) for v in query["date"].split(","))
        if endpoint == "timeseries":  # one goal's daily visitors, zero-filled
            days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
            visitors = {day: sum(self.goals.get(goal, {}).get(day, (0, 0))[0] for goal in names or ()) for day in days}
            return web.json_response({"results": [{"date": d.isoformat(), "visitors": visitors[d]} for d in days]})
        uses = self._goal_uses(first, last, names)
        if endpoint == "breakdown":
            return web.json_response({"results": [{"goal": goal, **{m: u.get(m, 0) for m in metrics}}
                                                  for goal, u in uses.items()]})
        return web.json_response({"results": {m: {"value": sum(u.get(m, 0) for u in uses.values())} for m in metrics}})

    def _goal_uses(self, first: date, last: date, names: set[str] | None) -> dict[str, dict[str, int]]:
        """Conversions per goal in ``first..last``, largest first; goals without any are absent."""
        out = {}
        for goal, days in self.goals.items():
            rows = [value for day, value in days.items() if first <= day <= last]
            if (names is None or goal in names) and sum(v for v, _ in rows):
                out[goal] = {"visitors": sum(v for v, _ in rows), "events": sum(e for _, e in rows)}
        return dict(sorted(out.items(), key=lambda item: -item[1]["visitors"]))

    def _unknown_goal_response(self, names: list[str]) -> web.Response | None:
        unknown = [name for name in names if name not in self.known_goals]
        if not unknown:
            return None
        return web.json_response({"error": f"The goal `{unknown[0]}` is not configured for this site."}, status=400)

    def _days(self, date_range: Any) -> tuple[date, date]:
        if date_range == "all":
            return date(2000, 1, 1), self.today
        if date_range == "day":
            return self.today, self.today
        first, last = (date.fromisoformat(value[:10]) for value in date_range)
        return first, last

    @staticmethod
    def _week_label(day: date, first: date) -> str:
        return max(day - timedelta(days=day.weekday()), first).isoformat()
