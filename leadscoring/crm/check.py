"""``leadscoring crm check``: does the configuration fit the CRM?

- Status values: where the CRM's API lists the values of its status fields
  (:meth:`Connector.status_values`), they are compared with the status map: values the CRM
  has that the map does not know (those leads are counted as ``crm.unmapped`` says), and
  values the map names that the CRM does not have (a typo: that rule never matches).
- One lead's push: the lead's fields are read, its current scores (from a scores file) are
  pushed exactly as ``leadscoring push`` would (same connector, credentials and body), then
  read again. A CRM that answers 2xx to a field it does not have (an unknown custom field it
  drops in silence) shows here as a field that is absent or unchanged after the push. The
  values written are the lead's own latest scores, so the check changes nothing a push would
  not; the push state is not touched (the next push sends that lead again, harmlessly).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from leadscoring.config.sections import CrmConfig, ExperimentConfig
from leadscoring.crm import connector_for
from leadscoring.crm.connector import Connector, parse_time
from leadscoring.crm.http import CrmError, JsonClient
from leadscoring.crm.push import push_scores
from leadscoring.crm.scores import read_scores
from leadscoring.errors import LeadDataError
from leadscoring.serving.payloads import crm_payloads


@dataclass
class CheckReport:
    """What a check found: ``lines`` to show, ``problems`` among them (exit 1 when any)."""

    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def note(self, line: str) -> None:
        self.lines.append(line)

    def problem(self, line: str) -> None:
        self.lines.append(line)
        self.problems += 1


def _key(value: Any) -> str:
    """A status value as compared with the CRM's list (true/false in lower case)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def map_values(status_map: Mapping[str, list[Mapping[str, Any]]]) -> dict[str, set[str]]:
    """Field -> every value the status map's rules name for it."""
    out: dict[str, set[str]] = {}
    for rules in status_map.values():
        for rule in rules:
            for name, wanted in rule.items():
                values = wanted if isinstance(wanted, list | tuple | set) else [wanted]
                out.setdefault(name, set()).update(_key(v) for v in values)
    return out


def check_status_values(
    connector: Connector, client: JsonClient, status_map: Mapping[str, list[Mapping[str, Any]]], unmapped: str
) -> CheckReport:
    """The status map (``status_map``, or the connector's usual one when empty) against the
    values the CRM lists; a map value the CRM lacks is a problem, and so is a CRM value the map
    lacks when ``unmapped`` is ``fail``."""
    report = CheckReport()
    crm_values = connector.status_values(client)
    if crm_values is None:
        report.note(f"status map: the {connector.kind} CRM lists no status values; not compared")
        return report
    used = status_map or connector.default_status_map()
    for name, mapped in sorted(map_values(used).items()):
        if name not in crm_values:
            report.note(f"status map: field '{name}': the CRM lists no values for it; not compared")
            continue
        have = {_key(v) for v in crm_values[name]}
        unknown = sorted(have - mapped)
        missing = sorted(mapped - have)
        if missing:
            report.problem(f"status map: field '{name}': values the CRM does not have: {missing} (a typo? those rules never match)")
        if unknown:
            line = f"status map: field '{name}': CRM values the map does not know: {unknown} (counted as crm.unmapped: {unmapped})"
            if unmapped == "fail":
                report.problem(line)
            else:
                report.note(line)
        if not missing and not unknown:
            report.note(f"status map: field '{name}': OK ({len(have)} values)")
    return report


def same_value(wrote: Any, read: Any) -> bool:
    """Whether a value read back is the one written, as CRMs store them: numbers as text or
    floats, times in another ISO 8601 spelling."""
    if wrote == read or _key(wrote) == _key(read):
        return True
    try:
        if math.isclose(float(wrote), float(read), rel_tol=1e-9, abs_tol=1e-9):
            return True
    except (TypeError, ValueError):
        pass
    if isinstance(wrote, str) and isinstance(read, str):
        a, b = parse_time(wrote), parse_time(read)
        return a is not None and a == b
    return False


def check_lead_push(
    crm: CrmConfig,
    scores: str | os.PathLike[str],
    lead_id: str,
    id_column: str,
    fields: Mapping[str, str] | None,
    client: JsonClient,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    experiment: ExperimentConfig | None = None,
) -> CheckReport:
    """Push lead ``lead_id``'s scores from the file ``scores`` and read them back through
    ``client``: a field absent or unchanged after a 2xx answer is a problem (an unknown custom
    field the CRM dropped). ``transport``: the push's httpx transport (tests); ``experiment``:
    what a control lead gets (its marker is pushed and read back; with nothing to push, a
    one-line error)."""
    report = CheckReport()
    table = read_scores(scores, id_column)
    row = table[table[id_column].astype(str) == lead_id]
    if row.empty:
        raise LeadDataError(f"{Path(scores).name}: lead {lead_id} is not in the scores")
    payloads = crm_payloads(row, id_column, fields, experiment)
    if not payloads:
        raise LeadDataError(
            f"{Path(scores).name}: lead {lead_id} is in the A/B test's control group: nothing is pushed for it "
            "(experiment.control_crm: none); check with a treatment lead"
        )
    values = payloads[0]["custom_fields"]
    connector = connector_for(crm)
    names = list(values)
    before = connector.read_back(client, lead_id, names)
    with tempfile.TemporaryDirectory(prefix="crm-check-") as tmp:
        summary = push_scores(
            row,
            id_column=id_column,
            crm=crm,
            state_file=Path(tmp) / "state.jsonl",
            fields=fields,
            transport=transport,
            experiment=experiment,
        )
    if summary.failed:
        raise CrmError(f"{crm.kind}: lead {lead_id} not written: {summary.failures.get(lead_id) or summary.stopped}")
    after = connector.read_back(client, lead_id, names)
    wrong = []
    for name, wrote in values.items():
        if wrote is None or wrote == "":
            continue  # an empty value: a CRM may store it as absent
        if name not in after:
            wrong.append(f"'{name}' is absent")
        elif not same_value(wrote, after[name]):
            state = "unchanged" if name in before and before[name] == after[name] else "different"
            wrong.append(f"'{name}' is {state} (wrote {wrote!r}, read {after[name]!r})")
    if wrong:
        report.problem(
            f"{crm.kind}: the CRM answered 2xx but in lead {lead_id} field {', field '.join(wrong)}: "
            "an unknown custom field? (check scoring.crm_fields against the CRM's field names)"
        )
    else:
        report.note(f"{crm.kind}: lead {lead_id}: {len(values)} field(s) pushed and read back unchanged")
    return report
