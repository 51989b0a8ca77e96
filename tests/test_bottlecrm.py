"""leadscoring and a real CRM, both ways: BottleCRM (tests/bottlecrm.py) on loopback, set up by
01_Documentos/crm_bottlecrm.example.yaml alone.

The scores go to BottleCRM's custom fields of leads (``leadscoring push``); the sales team
converts, closes and reopens leads there; ``leadscoring pull`` brings what became of them
into the outcome history; a second push sends only the scores that changed. The first tests
pin down what of BottleCRM the example configuration relies on."""

from __future__ import annotations

import json
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from leadscoring.cli import main
from leadscoring.config import ProjectConfig, load_config
from leadscoring.crm.outcomes import HISTORY_COLUMNS, StatusMap, iso

from .bottlecrm import BottleCrm
from .conftest import ROOT, write_project

pytestmark = [pytest.mark.slow, pytest.mark.bottlecrm]

EXAMPLE = ROOT / "01_Documentos" / "crm_bottlecrm.example.yaml"
LEADS = 6


def _example() -> dict[str, Any]:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


def _as_leadscoring(crm: BottleCrm, method: str, lead_id: str, body: dict[str, Any] | None = None) -> httpx.Response:
    """One call to a lead with leadscoring's token."""
    return httpx.request(
        method, f"{crm.url}/api/leads/{lead_id}/", json=body, headers={"Authorization": f"Bearer {crm.token}"}, timeout=60
    )


def _path(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        obj = obj[key]
    return obj


# -- BottleCRM as the example configuration sees it ------------------------------------------------


def test_leadscoring_s_token_writes_custom_fields_and_reads_them_back(bottlecrm):
    lead = bottlecrm.create_lead()
    answer = _as_leadscoring(bottlecrm, "PATCH", lead, {"custom_fields": {"lead_score": 87}, "probability": 87, "rating": "HOT"})
    assert answer.status_code == 200, answer.text
    read = _as_leadscoring(bottlecrm, "GET", lead).json()["lead_obj"]
    assert read["custom_fields"] == {"lead_score": 87} and read["probability"] == 87 and read["rating"] == "HOT"
    # A second write merges with the lead's other custom fields.
    assert _as_leadscoring(bottlecrm, "PATCH", lead, {"custom_fields": {"score_bucket": "HOT"}}).status_code == 200
    assert bottlecrm.lead(lead)["custom_fields"] == {"lead_score": 87, "score_bucket": "HOT"}


def test_what_the_example_configuration_relies_on(bottlecrm):
    """Where the id, status and modification time are; what moves the modification time;
    which status changes BottleCRM allows; what it does with an unknown custom field and a
    deleted lead; and that leadscoring's token reaches leads only."""
    rest = _example()["crm"]["rest"]
    lead = bottlecrm.create_lead()
    answer = _as_leadscoring(bottlecrm, "GET", lead).json()
    fields = {name: _path(answer, path) for name, path in rest["status_paths"].items()}
    assert _path(answer, rest["id_path"]) == lead and fields == {"status": "assigned"}
    created = datetime.fromisoformat(_path(answer, rest["modified_path"]))

    bottlecrm.update(lead, custom_fields={"lead_score": 40})
    assert datetime.fromisoformat(bottlecrm.lead(lead)["updated_at"]) > created  # a push moves it too
    bottlecrm.close(lead)
    bottlecrm.reopen(lead)
    assert bottlecrm.lead(lead)["status"] == "recycled"
    bottlecrm.convert(lead)
    refused = _as_leadscoring(bottlecrm, "PATCH", lead, {"status": "recycled"})
    assert refused.status_code == 400 and "cannot be changed back" in refused.text
    listed = [row["id"] for row in bottlecrm.call("GET", "/api/leads/?limit=100")["open_leads"]["open_leads"]]
    assert lead not in listed  # the list never shows converted leads: the pull reads leads by id

    assert _as_leadscoring(bottlecrm, "PATCH", lead, {"custom_fields": {"no_such_field": 1}}).status_code == 200
    assert bottlecrm.lead(lead)["custom_fields"] == {"lead_score": 40}  # dropped without a word
    assert bottlecrm.lead(bottlecrm.create_lead(status=None))["status"] is None

    gone = bottlecrm.create_lead()
    bottlecrm.delete(gone)
    assert _as_leadscoring(bottlecrm, "GET", gone).status_code == 404
    denied = httpx.post(
        f"{bottlecrm.url}/api/custom-fields/",
        json={"target_model": "Lead", "key": "other", "label": "Other", "field_type": "number"},
        headers={"Authorization": f"Bearer {bottlecrm.token}"},
        timeout=60,
    )
    assert denied.status_code == 403


def test_the_example_maps_every_bottlecrm_status(bottlecrm, tmp_path):
    cfg = _config(tmp_path, bottlecrm)
    assert cfg.crm is not None and cfg.crm.kind == "rest" and cfg.crm.unmapped == "fail"
    statuses = [value for value, _label in bottlecrm.call("GET", "/api/leads/?limit=1")["status"]]
    assert sorted(statuses) == ["assigned", "closed", "converted", "in process", "recycled"]
    status_map = StatusMap.from_config(cfg.crm)
    got = {status: status_map.match({"status": status}) for status in [*statuses, None]}
    assert got == {
        "assigned": "open",
        "in process": "open",
        "recycled": "open",
        None: "open",
        "converted": "converted",
        "closed": "lost",
    }


# -- both ways ----------------------------------------------------------------------------------


def _config(tmp: Path, crm: BottleCrm) -> ProjectConfig:
    """A project configured with the example's crm: section and crm_fields, at this BottleCRM."""
    example = _example()
    section = {**example["crm"], "url": crm.url}
    path = write_project(tmp, crm=section, scoring__crm_fields=example["scoring"]["crm_fields"])
    return load_config(path)


def _export(sample: pd.DataFrame, cfg: ProjectConfig, ids: list[str], rows: list[int]) -> pd.DataFrame:
    """Leads in the export's layout: the sample's ``rows``, carrying BottleCRM's ``ids``."""
    df = sample.drop(columns=cfg.data.target_column).iloc[rows].astype(object).where(lambda d: d.notna(), "")
    df[cfg.data.id_column] = ids
    return df.reset_index(drop=True)


def _score(cfg: ProjectConfig, export: pd.DataFrame, out: Path, *flags: str) -> pd.DataFrame:
    src = out.with_suffix(".leads.csv")
    src.write_text(export.to_csv(sep=cfg.data.separator, index=False, lineterminator="\n"), encoding="utf-8")
    argv = ["--config", str(cfg.source), "score", "--input", str(src), "--output", str(out), "--no-progress", *flags]
    assert main(argv) == 0
    return pd.read_csv(out, dtype={cfg.data.id_column: str}).set_index(cfg.data.id_column)


def _pushed(scores: pd.DataFrame, lead: str, crm_fields: dict[str, str]) -> dict[str, Any]:
    """The custom fields a lead should carry after a push of ``scores`` (empty scores: none)."""
    row = scores.loc[lead]
    return {name: row[field] for field, name in crm_fields.items() if field in row and not pd.isna(row[field])}


def _history_row(crm: BottleCrm, lead: str, outcome: str) -> list[str]:
    """The outcome history's row for the lead as BottleCRM has it now."""
    read = crm.lead(lead)
    status = json.dumps({"status": read["status"]}, sort_keys=True, separators=(",", ":"))
    return [lead, outcome, iso(datetime.fromisoformat(read["updated_at"])), "", "false", status]


def _history(cfg: ProjectConfig) -> list[list[str]]:
    table = pd.read_csv(cfg.path("outcome_history"), dtype=str, keep_default_na=False)
    assert list(table.columns) == list(HISTORY_COLUMNS)
    return table.to_numpy().tolist()


def _in_order(rows: list[list[str]]) -> list[list[str]]:
    return sorted(rows, key=lambda r: (datetime.fromisoformat(r[2]), r[0]))


def test_scores_go_to_bottlecrm_and_what_became_of_the_leads_comes_back(
    bottlecrm, tmp_path, sample, small_models, monkeypatch, capsys
):
    cfg = _config(tmp_path, bottlecrm)
    shutil.copytree(small_models, cfg.path("models_dir"))
    crm_fields = cfg.scoring.crm_fields
    monkeypatch.setenv(cfg.crm.token_env, bottlecrm.token)

    # The sales team has six leads in BottleCRM; the project scores them and pushes the scores.
    ids = [bottlecrm.create_lead() for _ in range(LEADS)]
    scores = _score(cfg, _export(sample, cfg, ids, list(range(LEADS))), tmp_path / "scores.csv")
    assert main(["--config", str(cfg.source), "push", "--scores", str(tmp_path / "scores.csv"), "--no-progress"]) == 0
    for lead in ids:
        assert bottlecrm.lead(lead)["custom_fields"] == _pushed(scores, lead, crm_fields), lead

    # They convert two leads, close two, and close one they then reopen; one they leave be.
    won, lost, reopened, untouched = ids[:2], ids[2:4], ids[4], ids[5]
    for lead in won:
        bottlecrm.convert(lead)
    for lead in [*lost, reopened]:
        bottlecrm.close(lead)
    bottlecrm.reopen(reopened)

    # The pull brings exactly that, one row per lead, in (modified, id) order.
    assert main(["--config", str(cfg.source), "pull", "--no-progress"]) == 0
    outcomes = {**dict.fromkeys(won, "converted"), **dict.fromkeys(lost, "lost"), reopened: "open", untouched: "open"}
    expected = _in_order([_history_row(bottlecrm, lead, outcome) for lead, outcome in outcomes.items()])
    assert _history(cfg) == expected
    first = cfg.path("outcome_history").read_bytes()
    assert main(["--config", str(cfg.source), "pull", "--no-progress"]) == 0
    assert cfg.path("outcome_history").read_bytes() == first  # nothing changed, nothing added

    # New data changes one lead's score: the next push sends that lead alone.
    pool = _score(
        cfg, _export(sample, cfg, [f"c{i}" for i in range(40)], list(range(LEADS, LEADS + 40))), tmp_path / "c.csv", "--no-history"
    )
    other = next(i for i, s in enumerate(pool["score"]) if s != scores.loc[untouched, "score"])
    rescored = _score(cfg, _export(sample, cfg, ids, [*range(LEADS - 1), LEADS + other]), tmp_path / "scores2.csv")
    assert rescored.loc[untouched, "score"] != scores.loc[untouched, "score"]
    assert (rescored.loc[ids[:-1], "score"] == scores.loc[ids[:-1], "score"]).all()
    before = {lead: bottlecrm.lead(lead)["updated_at"] for lead in ids}
    capsys.readouterr()
    assert main(["--config", str(cfg.source), "push", "--scores", str(tmp_path / "scores2.csv"), "--no-progress"]) == 0
    after = {lead: bottlecrm.lead(lead) for lead in ids}
    assert {lead for lead in ids if after[lead]["updated_at"] != before[lead]} == {untouched}
    assert after[untouched]["custom_fields"] == _pushed(rescored, untouched, crm_fields)

    # The reopened lead is closed again: the pull adds that row alone (the re-pushed lead was
    # modified, but its status was not).
    bottlecrm.close(reopened)
    assert main(["--config", str(cfg.source), "pull", "--no-progress"]) == 0
    expected = [*expected, _history_row(bottlecrm, reopened, "lost")]
    assert _history(cfg) == expected

    # A lead deleted in BottleCRM (it answers 404 for it) is recorded deleted, its last outcome kept.
    last_row = next(row for row in reversed(expected) if row[0] == untouched)
    bottlecrm.delete(untouched)
    assert main(["--config", str(cfg.source), "pull", "--no-progress"]) == 0
    *kept, gone = _history(cfg)
    assert kept == expected and gone[:2] == [untouched, "open"] and gone[3:] == ["", "true", last_row[5]]
    assert main(["--config", str(cfg.source), "pull", "--no-progress"]) == 0
    assert len(_history(cfg)) == len(expected) + 1  # still gone: nothing new


def test_the_push_sets_bottlecrm_s_own_probability_and_rating(bottlecrm, tmp_path, sample, small_models, monkeypatch):
    example = _example()
    assert example["crm"]["rest"]["push_body"] == {
        "probability": "{fields.lead_score}",
        "rating": "{fields.score_bucket}",
        "custom_fields": "{fields}",
    }
    path = write_project(
        tmp_path, crm={**example["crm"], "url": bottlecrm.url}, scoring__crm_fields=example["scoring"]["crm_fields"]
    )
    cfg = load_config(path)
    shutil.copytree(small_models, cfg.path("models_dir"))
    monkeypatch.setenv(cfg.crm.token_env, bottlecrm.token)
    ids = [bottlecrm.create_lead() for _ in range(3)]
    scores = _score(cfg, _export(sample, cfg, ids, [0, 1, 2]), tmp_path / "scores.csv")
    assert main(["--config", str(cfg.source), "push", "--scores", str(tmp_path / "scores.csv"), "--no-progress"]) == 0
    for lead in ids:
        read = bottlecrm.lead(lead)
        assert (read["probability"], read["rating"]) == (scores.loc[lead, "score"], scores.loc[lead, "bucket"])
        assert read["custom_fields"] == _pushed(scores, lead, cfg.scoring.crm_fields)
