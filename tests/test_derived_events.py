"""The DERIVED event log (tools/derive_events.py): GA4-schema events made from an export's
own activity columns. The SQL features computed from it give back the export's aggregates
exactly, for every lead: sessions = visits, engagement seconds = time on site, page views =
visits x pages per visit rounded half up, downloads = the yes/no column; a lead with missing
visits has no events (zero counts)."""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscoring.config import DataConfig, PathsConfig, ProjectConfig, load_config
from leadscoring.errors import LeadDataError, OutputPathError
from leadscoring.events.engine import compute_features, event_files
from leadscoring.ingest.load import read_leads
from tools.derive_events import derive_log, event_name

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [
    {"name": "sessions", "kind": "sessions"},
    {"name": "engaged_s", "kind": "engagement_seconds"},
    {"name": "page_views", "kind": "count", "event": "page_view"},
    {"name": "downloads", "kind": "count", "event": "file_download"},
]
CUTOFF = "2026-03-01T00:00:00Z"


def pages_total(visits: float, per_visit: float) -> float:
    """The documented total, computed independently: visits x pages per visit, half up."""
    if np.isnan(visits) or np.isnan(per_visit):
        return 0.0
    return float((Decimal(repr(visits)) * Decimal(repr(per_visit))).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def assert_reproduced(
    feats: pd.DataFrame, visits: pd.Series, seconds: pd.Series, per_visit: pd.Series, downloaded: pd.Series
) -> None:
    """Exact equality for every lead; a lead with missing visits has no events (zeros)."""
    has = visits.notna().to_numpy()
    want_sessions = np.where(has, visits.fillna(0), 0.0)
    want_seconds = np.where(has, seconds.fillna(0), 0.0)
    want_pages = [pages_total(v, p) if h else 0.0 for v, p, h in zip(visits, per_visit, has, strict=True)]
    want_downloads = np.where(has & downloaded.to_numpy(), 1.0, 0.0)
    np.testing.assert_array_equal(feats["sessions"].to_numpy(), want_sessions)
    np.testing.assert_array_equal(feats["engaged_s"].to_numpy(), want_seconds)
    np.testing.assert_array_equal(feats["page_views"].to_numpy(), np.array(want_pages))
    np.testing.assert_array_equal(feats["downloads"].to_numpy(), want_downloads)


def foreign_export(n: int = 160, seed: int = 7) -> pd.DataFrame:
    """A made-up export with English columns, odd activity labels and missing values."""
    rng = np.random.default_rng(seed)
    visits = rng.integers(0, 15, n).astype(float)
    visits[rng.choice(n, 10, replace=False)] = np.nan
    seconds = np.where(visits > 0, np.round(rng.uniform(0, 3000, n), 2), 0.0)
    seconds[:3], visits[:3] = [12.5, 7.25, 0.0], 0  # time without a visit: one event outside any session
    per_visit = np.round(rng.uniform(1, 6, n), 2)
    per_visit[3:6], visits[3:6] = [1.25, 2.5, 0.5], [2, 3, 1]  # x.5 totals: rounded half up
    per_visit[rng.choice(np.arange(6, n), 8, replace=False)] = np.nan
    touches = [
        "Email Opened",
        "Página Vista",
        "2nd call",
        "page_view",
        "session_start",
        "Select",
        None,
        "Google Ads click",
        "A very long activity label that exceeds forty characters",
    ]
    return pd.DataFrame(
        {
            "Lead ID": [f"L{i:04d}" for i in range(n)],
            "Converted": rng.integers(0, 2, n),
            "Web Visits": visits,
            "Time On Site": seconds,
            "Pages Per Visit": per_visit,
            "Brochure": rng.choice(["Y", "N", None], n),
            "Last Touch": [touches[i % len(touches)] for i in range(n)],
            "Region": rng.choice(["North", "South"], n),
        }
    )


def foreign_config(root: Path, **derive: object) -> ProjectConfig:
    data = DataConfig(
        id_column="Lead ID",
        target_column="Converted",
        missing_values=["Select"],
        yes_values=["Y"],
        no_values=["N"],
        columns={
            "numeric": ["Web Visits", "Time On Site", "Pages Per Visit"],
            "categorical": ["Last Touch", "Region"],
            "yes_no": ["Brochure"],
        },
    )
    mapping = {
        "visits": "Web Visits",
        "time_on_site": "Time On Site",
        "pages_per_visit": "Pages Per Visit",
        "download": "Brochure",
        "last_activity": "Last Touch",
        "seed": 3,
        "days_back": 20,
        **derive,
    }
    return ProjectConfig(
        root=root,
        paths=PathsConfig(raw_data="raw/export.csv"),
        data=data,
        events={
            "path": "events/events_*.json",
            "lead_key": "Lead ID",
            "cutoff_at": CUTOFF,
            "derive": mapping,
            "features": FEATURES,
        },
    )


@pytest.fixture()
def foreign(tmp_path):
    (tmp_path / "raw").mkdir()
    foreign_export().to_csv(tmp_path / "raw" / "export.csv", index=False)
    cfg = foreign_config(tmp_path)
    return cfg, read_leads(cfg.path("raw_data"), cfg)


def read_records(folder: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(folder.glob("events_*.json")) for line in f.read_text().splitlines()]


def test_a_foreign_export_is_reproduced_exactly(foreign):
    cfg, leads = foreign
    summary = derive_log(cfg)  # default folder: the one of events.path
    assert summary["derived"] and summary["with_events"] == leads["Web Visits"].notna().sum()
    feats = compute_features(cfg, leads)
    assert_reproduced(feats, leads["Web Visits"], leads["Time On Site"], leads["Pages Per Visit"], leads["Brochure"] == "Y")
    assert feats.loc[:2, "sessions"].eq(0).all() and feats.loc[:1, "engaged_s"].tolist() == [12.5, 7.25]
    assert feats.loc[3:5, "page_views"].tolist() == [3.0, 8.0, 1.0]  # 2.5, 7.5 and 0.5 rounded half up


def test_the_derived_files_are_ga4_shaped_labelled_and_before_the_cut_off(foreign):
    cfg, leads = foreign
    folder = cfg.root / "events"
    derive_log(cfg)
    records = read_records(folder)
    readme = (folder / "README.txt").read_text()
    assert "DERIVED EVENTS - NOT OBSERVED" in readme and "Web Visits" in readme
    cutoff_us = pd.Timestamp(CUTOFF).value // 1000
    assert all(r["event_timestamp"] < cutoff_us for r in records)
    assert all(r["traffic_source"]["name"] == "(derived)" and r["user_properties"][0]["key"] == "derived" for r in records)
    assert {r["user_pseudo_id"] for r in records} <= set(leads["Lead ID"])
    by_file = {f.name[7:15] for f in folder.glob("events_*.json")}
    assert by_file == {r["event_date"] for r in records}
    names = {r["event_name"] for r in records}
    assert {
        "email_opened",
        "pagina_vista",
        "activity_2nd_call",
        "activity_page_view",
        "activity_session_start",
    } <= names and "select" not in names
    last = pd.DataFrame(records).sort_values("event_timestamp").groupby("user_pseudo_id")["event_name"].last()
    touched = leads.set_index("Lead ID")["Last Touch"]
    for key, name in last.items():  # the last activity is every lead's final event
        if touched[key] not in (None, "Select") and isinstance(touched[key], str):
            assert name == event_name(touched[key])


def test_the_log_is_seeded_and_never_written_in_the_raw_folder(foreign, tmp_path):
    cfg, leads = foreign
    derive_log(cfg, tmp_path / "a")
    derive_log(cfg, tmp_path / "b", leads=leads.sample(frac=1, random_state=1))  # another row order

    def canonical(folder: Path) -> list[str]:
        return sorted(json.dumps(r, sort_keys=True) for r in read_records(folder))

    assert canonical(tmp_path / "a") == canonical(tmp_path / "b")  # same events, whatever the row order
    with pytest.raises(OutputPathError, match="raw exports"):
        derive_log(cfg, cfg.path("raw_data").parent / "events")
    (tmp_path / "a" / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="other files"):
        derive_log(cfg, tmp_path / "a")


def test_event_names_follow_ga4_rules():
    assert event_name("Email Opened") == "email_opened"
    assert event_name("Visited Booth in Tradeshow") == "visited_booth_in_tradeshow"
    assert event_name("ga_custom") == "activity_ga_custom" and event_name("page_view") == "activity_page_view"
    assert event_name("¿Sí?") == "si" and event_name("***") == "activity"
    long = event_name("x" * 80)
    assert len(long) == 40 and long[0].isalpha()


def test_the_mapping_must_name_configured_columns(tmp_path):
    with pytest.raises(ValueError, match="events.derive.download: 'Region' is not a yes_no column"):
        foreign_config(tmp_path, download="Region")
    with pytest.raises(ValueError, match="events.derive.visits: 'Clicks' is not a numeric column"):
        foreign_config(tmp_path, visits="Clicks")


def test_the_shipped_export_is_reproduced_exactly_on_300_leads(tmp_path):
    cfg = load_config(ROOT / "01_Documentos" / "config_events.yaml")
    leads = read_leads(cfg.path("raw_data"), cfg)
    missing = leads["visitas_total"].isna()
    sample = pd.concat([leads[missing].head(10), leads[~missing].sample(290, random_state=0)], ignore_index=True)
    derive_log(cfg, tmp_path / "events", leads=sample)
    feats = compute_features(cfg, sample, files=event_files(tmp_path / "events" / "events_*.json"))
    feats = feats.rename(columns={"engagement_seconds": "engaged_s"})
    assert_reproduced(
        feats,
        sample["visitas_total"],
        sample["tiempo_en_site_total"],
        sample["paginas_vistas_visita"],
        sample["descarga_lm"] == "Yes",
    )
    assert (feats.loc[:9, ["sessions", "engaged_s", "page_views", "downloads"]] == 0).all().all()
    assert sample.loc[:9, "tiempo_en_site_total"].gt(0).any()  # the export had time on site for them


def test_the_second_configuration_keeps_its_products_apart():
    cfg = load_config(ROOT / "01_Documentos" / "config_events.yaml")
    shipped = load_config(ROOT / "01_Documentos" / "config.yaml")
    for key in ("validation_dir", "work_dir", "models_dir", "results_dir", "docs_dir", "score_history"):
        assert cfg.path(key) != shipped.path(key)
    assert not cfg.root_path(cfg.events.path).is_relative_to(shipped.path("raw_data").parent)
    with pytest.raises(LeadDataError, match="no events section"):
        derive_log(shipped)
