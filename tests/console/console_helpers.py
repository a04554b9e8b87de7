"""Console test helpers: Zipkin v2 span dicts shaped like the sidecars' (sandbox/proxy/tracing.py), and
the text a person reads on a rendered page."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from sandbox.console.spans import Span, decode_zipkin
from sandbox.proxy.record import RequestRecord, record
from sandbox.proxy.tracecontext import TraceContext

T0 = 1_700_000_000_000_000  # microseconds


def zspan(
    trace: str = "a" * 32,
    span_id: str = "1" * 16,
    parent: str | None = None,
    service: str = "productpage.default",
    name: str = "reviews.default.svc.cluster.local:9080/*",
    kind: str | None = "CLIENT",
    start: int = T0,
    duration: int = 1_000,
    status: str | None = "200",
    **extra: Any,
) -> dict[str, Any]:
    span: dict[str, Any] = {
        "traceId": trace,
        "id": span_id,
        "name": name,
        "timestamp": start,
        "duration": duration,
        "localEndpoint": {"serviceName": service, "ipv4": "127.0.0.1"},
        "tags": {"component": "proxy"} | ({"http.status_code": status} if status is not None else {}),
    }
    if kind is not None:
        span["kind"] = kind
    if parent is not None:
        span["parentId"] = parent
    span.update(extra)
    return span


def spans(*raw: dict[str, Any]) -> list[Span]:
    return decode_zipkin(list(raw))


class Page(HTMLParser):
    """The text a person reads in each table row of a section, cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, list[list[str]]] = {}
        self.cards: dict[str, str] = {}
        self._section = self._card = ""
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "section":
            self._card = ""  # the cards come before the sections
            self._section = attr.get("id") or ""
            self.sections[self._section] = []
        elif tag == "div" and (attr.get("id") or "").startswith("card-"):
            self._card = attr["id"] or ""
            self.cards[self._card] = ""
        elif tag == "tr" and self._section:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._row is not None and self._cell is not None:
            self._row.append(" ".join(" ".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.sections[self._section].append(self._row)
            self._row = None
        elif tag == "section":
            self._section = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._card and data.strip():
            self.cards[self._card] += " " + data.strip()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass


def read_page(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def hop(ctx: TraceContext, start: float, seconds: float, authority: str, status: int) -> RequestRecord:
    rec = record(
        start,
        method="GET",
        path="/",
        authority=authority,
        request_id="req-1",
        response_code=status,
        duration=seconds,
        upstream_host="127.0.0.1:15006",
        downstream_remote_address="127.0.0.1:40000",
        operation=f"{authority.split(':')[0]}.default.svc.cluster.local:9080/*",
    )
    rec.trace = ctx
    return rec
