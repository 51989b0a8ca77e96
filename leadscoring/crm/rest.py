"""A home-grown CRM, configured rather than coded (``crm.kind: rest``, settings in ``crm.rest``).

Templates
    Strings in the URL and body templates may hold placeholders: ``{id}`` (the lead), and in the
    push body ``{fields}`` (the score fields, CRM field name -> value) and ``{fields.NAME}`` (the
    value of the one pushed field ``NAME``, e.g. ``{"probability": "{fields.lead_score}",
    "custom_fields": "{fields}"}``); in the pull ``{since}``
    and ``{until}`` (ISO 8601 UTC with ``Z``, whole seconds: ``since`` rounded down, ``until``
    up, so the CRM answers at least the window), ``{page_size}``, ``{cursor}``, ``{offset}``.
    In a URL a value is percent-encoded; in a JSON body a string that is one placeholder alone
    becomes the value itself (``"{fields}"`` an object, ``"{page_size}"`` a number, ``"{cursor}"``
    null on the first page), and a placeholder inside a longer string is replaced by its text.
    The default push is today's: ``PATCH /leads/{id}`` with ``{"lead_id": ..., "custom_fields": {...}}``.

Pull paging (``crm.rest.pull.paging``)
    - ``body_cursor`` / ``query_cursor``: the answer's ``cursor_path`` goes into the next request
      as ``{cursor}`` (in the body / in the URL); no cursor (absent, null or "") ends the pull.
    - ``next_url``: the answer's ``next_url_path`` is the next page's URL (absolute, or relative to
      the page); none ends the pull.
    - ``offset``: pages until one comes back empty. When the template also holds ``{since}`` it
      is read as a keyset on (modified, id): each page starts at the latest modification time
      read so far, and ``{offset}`` skips only the records already read at that time. A lead
      changed during the pull then shifts no page, provided the CRM filters ``modified >= {since}``
      and sorts by modification time then id. Without ``{since}``, ``{offset}`` grows by each
      page's length.
    - ``none``: one page.
    - ``poll_known_ids``: no list at all: ``url`` reads one lead (``{id}``), asked for each lead
      of the score history; a lead the CRM no longer has (404, 410) is recorded deleted (with
      its last known outcome) if the outcome history knows it, else skipped.

Records
    ``items_path`` is where the leads are in an answer ("" = the answer itself); in each lead,
    ``id_path``, ``modified_path`` (ISO 8601, naive = UTC, or epoch seconds or milliseconds),
    ``outcome_time_path`` and ``deleted_path`` (optional: absent or null = none / not deleted),
    and ``status_paths`` (status-map field name -> path; absent is an error except for a deleted
    lead) are JSON paths: keys joined by dots, integer indexes allowed (``data.0.id``).
    A missing path is a one-line :class:`CrmError` naming the CRM, the lead (or the page) and
    the path. Whatever the CRM answers, the pull keeps the records modified in ``[since, until]``,
    each lead once (its latest record), in ascending (modified, id) order.

What a pull sees
    Whatever the CRM's list answers: a lead it no longer lists (deleted, merged away) simply
    stops appearing unless the CRM keeps it with a deletion flag (``deleted_path``); with
    ``poll_known_ids`` a lead the CRM answers 404 or 410 for is recorded deleted, keeping its
    last outcome and status (the time of that row is the pull's ``until``: the deletion's own
    time is not known), or skipped if the pull never saw it before, and
    leads this project never scored are never asked for. Rate limits: 429 and 5xx are retried
    by the shared client (``Retry-After`` honoured); other 4xx stop the pull.

Check
    ``read_back`` reads ``read_url`` (``{id}``) and takes the fields object at
    ``read_fields_path``. ``status_values`` is None: a home-grown CRM lists no status values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from leadscoring.config import ConfigError
from leadscoring.config.sections import RestConfig
from leadscoring.crm.connector import PushRequest, Record, gone_record, iso_utc, latest_by_lead, parse_time, read_time
from leadscoring.crm.http import CrmError, JsonClient

log = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\{(\w+(?:\.\w+)?)\}")
_PUSH_NAMES = frozenset({"id", "fields"})
_PULL_NAMES = frozenset({"since", "until", "page_size", "cursor", "offset", "id"})
_FALSE = frozenset({"", "0", "false", "no", "n", "f"})
_MISSING = object()


def _names(template: Any) -> set[str]:
    """The placeholder names in a template (strings inside objects and lists included)."""
    if isinstance(template, str):
        return set(_PLACEHOLDER.findall(template))
    if isinstance(template, Mapping):
        return set().union(*(_names(v) for v in template.values())) if template else set()
    if isinstance(template, list):
        return set().union(*(_names(v) for v in template)) if template else set()
    return set()


#: A push body placeholder naming one pushed field: ``{fields.lead_score}`` is the value sent
#: as the CRM field ``lead_score`` (a field of ``scoring.crm_fields``), e.g. to set a CRM's own
#: top-level field beside the custom fields.
_ONE_FIELD = "fields."


def _one_absent_field(member: Any, present: Mapping[str, Any]) -> bool:
    """Whether a body member is one ``{fields.NAME}`` placeholder whose field is absent."""
    m = _PLACEHOLDER.fullmatch(member) if isinstance(member, str) else None
    return m is not None and m.group(1).startswith(_ONE_FIELD) and m.group(1) not in present


def _check_template(setting: str, template: Any, allowed: frozenset[str]) -> None:
    names = _names(template)
    if "fields" in allowed:
        names = {n for n in names if not (n.startswith(_ONE_FIELD) and len(n) > len(_ONE_FIELD))}
    unknown = sorted(names - allowed)
    if unknown:
        raise ConfigError(f"{setting}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; use {sorted(allowed)}")


def fill_body(template: Any, values: Mapping[str, Any]) -> Any:
    """A JSON body template filled in: a string that is one placeholder becomes its value,
    placeholders inside longer strings their text (None: "")."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and whole.group(1) in values:
            value = values[whole.group(1)]
            return dict(value) if isinstance(value, Mapping) else value
        return _PLACEHOLDER.sub(lambda m: _text(values[m.group(1)]) if m.group(1) in values else m.group(0), template)
    if isinstance(template, Mapping):
        return {k: fill_body(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_body(v, values) for v in template]
    return template


def fill_url(template: str, values: Mapping[str, Any]) -> str:
    """A URL template filled in, each value percent-encoded (``since``/``until`` keep their colons)."""

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            return m.group(0)
        return quote(_text(values[name]), safe=":" if name in ("since", "until") else "")

    return _PLACEHOLDER.sub(one, template)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def json_path(data: Any, path: str) -> Any:
    """The value at ``path`` (keys joined by dots, integer indexes into lists; "" = ``data``),
    or ``_MISSING``."""
    if not path:
        return data
    for key in path.split("."):
        if isinstance(data, Mapping) and key in data:
            data = data[key]
        elif isinstance(data, list) and re.fullmatch(r"-?\d+", key) and -len(data) <= int(key) < len(data):
            data = data[int(key)]
        else:
            return _MISSING
    return data


def _truthy(value: Any) -> bool:
    """A ``deleted`` value: null, false, 0 and "false"/"no"/"0"/"" are not deleted; anything
    else (true, a deletion time, ...) is."""
    if value is None or value is _MISSING:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE
    return bool(value)


class Rest:
    """A CRM whose API is described by ``crm.rest`` (see the module docstring)."""

    kind = "rest"
    final_answer = None  # HTTP's usual rules: 429 and 5xx retried, other 4xx final

    def __init__(self, base_url: str, rest: RestConfig | None = None, page_size: int = 100) -> None:
        self.base_url = base_url
        self.rest = rest if rest is not None else RestConfig()
        self.page_size = page_size
        self._validate()

    def _validate(self) -> None:
        r, p = self.rest, self.rest.pull
        _check_template("crm.rest.push_url", r.push_url, frozenset({"id"}))
        _check_template("crm.rest.push_body", r.push_body, _PUSH_NAMES)
        _check_template("crm.rest.read_url", r.read_url, frozenset({"id"}))
        _check_template("crm.rest.pull.url", p.url, _PULL_NAMES)
        _check_template("crm.rest.pull.body", p.body, _PULL_NAMES)
        if not p.url:
            return  # push only: the pull says what is missing when asked
        if p.body is not None and p.method == "GET":
            raise ConfigError("crm.rest.pull.body: a body is sent only with crm.rest.pull.method POST")
        if p.poll_known_ids:
            if "id" not in _names(p.url):
                raise ConfigError("crm.rest.pull.url: poll_known_ids reads one lead per request; the URL needs {id}")
            return
        needs = {
            "body_cursor": ("cursor_path", "{cursor}" in str(p.body), "crm.rest.pull.body needs {cursor}"),
            "query_cursor": ("cursor_path", "cursor" in _names(p.url), "crm.rest.pull.url needs {cursor}"),
            "next_url": ("next_url_path", True, ""),
            "offset": ("", "offset" in _names(p.url) | _names(p.body), "crm.rest.pull.url or body needs {offset}"),
        }
        if p.paging in needs:
            path_setting, placed, why = needs[p.paging]
            if path_setting and not getattr(p, path_setting):
                raise ConfigError(f"crm.rest.pull.{path_setting}: required by paging {p.paging} (where the answer holds it)")
            if not placed:
                raise ConfigError(f"crm.rest.pull.paging {p.paging}: {why}")

    # -- push --------------------------------------------------------------------------------

    def push_request(self, lead_id: str, values: Mapping[str, Any]) -> PushRequest:
        """``push_method`` to ``push_url`` with ``push_body``, ``{id}``, ``{fields}`` and each
        ``{fields.NAME}`` filled in. A member of the body that is one ``{fields.NAME}`` is left
        out for a lead without that field (a control lead of the A/B test carries only its
        marker); any other ``{fields.NAME}`` whose field is not pushed (not in
        ``scoring.crm_fields``) is a one-line :class:`ConfigError`."""
        r = self.rest
        one = {f"{_ONE_FIELD}{k}": v for k, v in values.items()}
        template = r.push_body
        if isinstance(template, dict):
            template = {k: v for k, v in template.items() if not _one_absent_field(v, one)}
        missing = sorted(n for n in _names(template) if n.startswith(_ONE_FIELD) and n not in one)
        if missing:
            raise ConfigError(
                f"crm.rest.push_body: {', '.join('{' + n + '}' for n in missing)} names no pushed field of lead {lead_id}; "
                f"pushed: {sorted(values)} (scoring.crm_fields)"
            )
        body = fill_body(template, {"id": lead_id, "fields": values, **one})
        return PushRequest(r.push_method, fill_url(r.push_url, {"id": lead_id}), body)

    # -- pull --------------------------------------------------------------------------------

    def pull(
        self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str] | None = None
    ) -> Iterator[Record]:
        """Every lead modified in ``[since, until]``, once each (its latest record), in ascending
        (modified, id) order; records the CRM answers outside the window are dropped."""
        p = self.rest.pull
        if not p.url:
            raise ConfigError("crm.rest.pull.url is empty: say where the CRM lists its leads (see crm.rest.pull)")
        pages = self._poll(client, since, until, known_ids or ()) if p.poll_known_ids else self._pages(client, since, until)
        yield from latest_by_lead(rec for page in pages for rec in page if since <= rec.modified_at <= until)

    def _values(self, since: datetime, until: datetime) -> dict[str, Any]:
        return {"since": iso_utc(since), "until": iso_utc(until, up=True), "page_size": self.page_size, "cursor": None, "offset": 0}

    def _pages(self, client: JsonClient, since: datetime, until: datetime) -> Iterator[list[Record]]:
        """The window's pages, as ``crm.rest.pull.paging`` says."""
        p = self.rest.pull
        values = self._values(since, until)
        keyset = p.paging == "offset" and "since" in _names(p.url) | _names(p.body)
        url = fill_url(p.url, values)
        seen: set[tuple[str, datetime]] = set()
        read: list[Record] = []  # keyset: every record read, to count those at the anchor
        n = 0
        while True:
            n += 1
            what = f"leads modified {values['since']} to {values['until']}, page {n}"
            full = client.url(url)
            answer = self._answer(client, full, values, what)
            page = self._records(answer, f"page {n}")
            yield page
            if p.paging == "none" or not page:
                return
            new = [r for r in page if (r.lead_id, r.modified_at) not in seen]
            if not new:
                raise CrmError(f"{self.kind}: page {n} holds only leads already read: the CRM does not move on ({p.paging} paging)")
            seen.update((r.lead_id, r.modified_at) for r in new)
            if p.paging == "offset":
                if keyset:
                    read.extend(new)
                    anchor = max(r.modified_at for r in page)
                    if anchor > until:
                        return  # sorted by modification time: the pages after this are after the window
                    values["since"] = iso_utc(anchor)
                    floor = parse_time(values["since"])
                    assert floor is not None
                    values["offset"] = sum(1 for r in read if r.modified_at >= floor)
                else:
                    values["offset"] += len(page)
                url = fill_url(p.url, values)
            elif p.paging == "next_url":
                link = self._follow(answer, p.next_url_path)
                if link is None:
                    return
                url = str(httpx.URL(full).join(link))
            else:  # body_cursor, query_cursor
                cursor = self._follow(answer, p.cursor_path)
                if cursor is None:
                    return
                if cursor == values["cursor"]:
                    raise CrmError(f"{self.kind}: page {n} gives the same cursor as the page before: the CRM does not move on")
                values["cursor"] = cursor
                url = fill_url(p.url, values)

    def _answer(self, client: JsonClient, url: str, values: Mapping[str, Any], what: str) -> Any:
        p = self.rest.pull
        body = fill_body(p.body, values) if p.body is not None else None
        return client.request(p.method, url, json_body=body, what=what)

    @staticmethod
    def _follow(answer: Any, path: str) -> Any:
        """The next page's cursor or link at ``path``; None (absent, null, "") ends the pull."""
        value = json_path(answer, path)
        if value is _MISSING or value is None or value == "":
            return None
        return value

    def _poll(self, client: JsonClient, since: datetime, until: datetime, known_ids: Collection[str]) -> Iterator[list[Record]]:
        """Each known lead read by id; one the CRM no longer has (404, 410) is a
        :func:`~leadscoring.crm.connector.gone_record` as of ``until``."""
        values = self._values(since, until)
        gone = 0
        for lead_id in sorted(set(known_ids)):
            one = {**values, "id": lead_id}
            try:
                answer = self._answer(client, fill_url(self.rest.pull.url, one), one, f"lead {lead_id}")
            except CrmError as exc:
                if exc.status in (404, 410):
                    gone += 1
                    yield [gone_record(lead_id, until)]
                    continue
                raise
            yield self._records(answer, f"lead {lead_id}")
        if gone:
            log.info("%s: %d known lead(s) not found in the CRM (deleted there)", self.kind, gone)

    def _records(self, answer: Any, where: str) -> list[Record]:
        """The leads of one answer (at ``items_path``: a list, or one lead)."""
        items_path = self.rest.pull.items_path
        items = json_path(answer, items_path)
        if items is _MISSING:
            raise CrmError(f"{self.kind}: {where}: no '{items_path}' in the answer (crm.rest.pull.items_path)")
        if items is None:
            return []
        if isinstance(items, Mapping):
            items = [items]
        if not isinstance(items, list):
            raise CrmError(f"{self.kind}: {where}: '{items_path or 'the answer'}' is {type(items).__name__}, not a list of leads")
        return [self._record(item, f"{where}, lead #{i + 1}") for i, item in enumerate(items)]

    def _record(self, item: Any, where: str) -> Record:
        """One lead's record read through the configured JSON paths."""
        r = self.rest
        raw_id = json_path(item, r.id_path)
        if raw_id is _MISSING or raw_id is None or raw_id == "":
            raise CrmError(f"{self.kind}: {where}: no '{r.id_path}' in the record (crm.rest.id_path)")
        lead_id = str(raw_id)
        lead = f"{self.kind}: lead {lead_id}"

        def value(path: str, setting: str, required: bool) -> Any:
            v = json_path(item, path)
            if v is _MISSING and required:
                raise CrmError(f"{lead}: no '{path}' in its record ({setting})")
            return None if v is _MISSING else v

        def when(path: str, setting: str, required: bool) -> datetime | None:
            v = value(path, setting, required)
            if v is None and not required:
                return None
            return read_time(v, lead, f"'{path}'")

        modified = when(r.modified_path, "crm.rest.modified_path", True)
        assert modified is not None
        deleted = _truthy(value(r.deleted_path, "crm.rest.deleted_path", False)) if r.deleted_path else False
        fields = {name: value(path, f"crm.rest.status_paths.{name}", not deleted) for name, path in r.status_paths.items()}
        outcome_at = when(r.outcome_time_path, "crm.rest.outcome_time_path", False) if r.outcome_time_path else None
        return Record(lead_id, modified, fields, deleted, outcome_at)

    # -- check -------------------------------------------------------------------------------

    def read_back(self, client: JsonClient, lead_id: str, names: list[str]) -> dict[str, Any]:
        """The fields ``names`` of lead ``lead_id`` that its record holds (``read_url``, then the
        object at ``read_fields_path``); a name the record lacks is left out."""
        r = self.rest
        answer = client.request("GET", fill_url(r.read_url, {"id": lead_id}), what=f"lead {lead_id}")
        fields = json_path(answer, r.read_fields_path)
        if fields is _MISSING:
            raise CrmError(f"{self.kind}: lead {lead_id}: no '{r.read_fields_path}' in its answer (crm.rest.read_fields_path)")
        if fields is None:
            return {}
        if not isinstance(fields, Mapping):
            raise CrmError(
                f"{self.kind}: lead {lead_id}: '{r.read_fields_path}' is {type(fields).__name__}, not an object of fields"
            )
        return {name: fields[name] for name in names if name in fields}

    def status_values(self, client: JsonClient) -> dict[str, list[str]] | None:
        """None: a home-grown CRM lists no status values."""
        return None

    def default_status_map(self) -> dict[str, list[dict[str, Any]]]:
        """On the record's ``status``: "converted" or "won" -> converted, "lost" or "closed" ->
        lost; any other value matches no rule (``crm.unmapped`` decides what it counts as)."""
        return {"converted": [{"status": ["converted", "won"]}], "lost": [{"status": ["lost", "closed"]}], "open": []}
