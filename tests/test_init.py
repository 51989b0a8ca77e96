"""`leadscoring init` on exports nobody here has tuned to: what it infers, and the project
folder it creates (validated by the same reader and schema as every other path)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.config import ConfigError, load_config
from leadscoring.errors import LeadDataError
from leadscoring.ingest.load import validate_file
from leadscoring.ingest.profile import profile_export, sniff_encoding
from leadscoring.notebook.scaffold import init_project, shipped_notebooks


def _english(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A CRM export in English: spaces in headers, a placeholder, a -1 sentinel, decimal
    commas, a sales-status field written after the call, a yes/no target."""
    rng = np.random.default_rng(seed)
    conv = rng.random(n) < 0.35
    return pd.DataFrame(
        {
            "Prospect ID": [f"P-{i:05d}" for i in range(n)],
            "Lead Source": rng.choice(["Google", "Direct Traffic", "Referral", "Select"], n),
            "Total Visits": np.where(rng.random(n) < 0.1, -1, rng.poisson(3 + 2 * conv)),
            "Time On Website": [f"{x:.1f}".replace(".", ",") for x in rng.gamma(2, 300 + 400 * conv)],
            "Do Not Email": rng.choice(["Yes", "No"], n, p=[0.1, 0.9]),
            "Lead Status": np.where(conv, "Closed - Won", rng.choice(["Contacted", "Lost"], n)),
            "Created": pd.date_range("2026-01-01", periods=n, freq="h").strftime("%Y-%m-%d %H:%M"),
            "Notes": [f"called on day {i}" for i in range(n)],
            "Converted": np.where(conv, "yes", "no"),
        }
    )


def _write(df: pd.DataFrame, path, sep: str = ";", encoding: str = "utf-8") -> object:
    path.write_bytes(df.to_csv(sep=sep, index=False, lineterminator="\n").encode(encoding))
    return path


def test_profile_of_an_english_export(tmp_path):
    d = profile_export(_write(_english(), tmp_path / "crm.csv"), "Converted")
    assert (d.separator, d.encoding, d.decimal, d.positive, d.negative) == (";", "utf-8", ",", "yes", "no")
    assert d.id_column == "Prospect ID"
    assert d.numeric == ["Total Visits", "Time On Website"] and d.yes_no == ["Do Not Email"]
    assert d.categorical == ["Lead Source", "Lead Status"] and d.missing_values == ["Select"]
    assert d.sentinels == {"Total Visits": [-1.0]} and d.ranges["Time On Website"] == (0.0, None)
    assert set(d.left_out) == {"Created", "Notes"} and "date" in d.left_out["Created"]
    assert "free text" in d.left_out["Notes"] and d.post_contact == {}  # named by init, with the audit's stems
    assert "Time On Website" in d.engagement and "Lead Source" in d.fit


def test_init_creates_a_valid_project_and_keeps_the_export(tmp_path, capsys):
    src = _write(_english(), tmp_path / "crm.csv", sep=",", encoding="utf-8-sig")
    code = main(["init", str(tmp_path / "client"), "--input", str(src), "--target", "Converted", "--id", "Prospect ID"])
    out = capsys.readouterr().out
    assert code == 0 and "REVIEW post-contact (kept out of models): Lead Status" in out
    project = tmp_path / "client"
    raw = project / "02_Datos" / "01_Originales" / "crm.csv"
    assert raw.read_bytes() == src.read_bytes() and not raw.stat().st_mode & 0o222
    assert sorted(p.name for p in (project / "03_Notebooks").iterdir()) == [p.name for p in shipped_notebooks()]
    assert len(shipped_notebooks()) == 10
    cfg = load_config(project / "01_Documentos" / "config.yaml")
    assert cfg.data.separator == "," and cfg.data.post_contact == ["Lead Status"] and not cfg.data.use_post_contact_fields
    leads = validate_file(cfg.path("raw_data"), cfg)
    assert leads == 400 and cfg.data.date_column is None
    with pytest.raises(ConfigError, match="already exists"):
        init_project(project, src, "Converted")


def test_init_with_a_creation_date(tmp_path):
    dest, d = init_project(tmp_path / "p", _write(_english(), tmp_path / "crm.csv"), "Converted", date="Created")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert cfg.data.date_column == "Created" and "Created" not in d.left_out
    assert validate_file(cfg.path("raw_data"), cfg) == 400


def test_an_export_without_ids_is_numbered(tmp_path):
    df = _english().drop(columns="Prospect ID")
    dest, d = init_project(tmp_path / "p", _write(df, tmp_path / "no_id.csv"), "Converted")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert d.id_column is None and cfg.data.id_from_row_number and cfg.data.id_column == "row_number"
    assert validate_file(cfg.path("raw_data"), cfg) == 400


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["yes"] * 10, "exactly two values"),
        (["a", "b", "c"] * 4, "exactly two values"),
        (["open", "closed"] * 5, "pass --positive"),
    ],
)
def test_target_problems_are_one_line(tmp_path, values, message):
    df = pd.DataFrame({"x": np.arange(len(values)), "Outcome": values})
    with pytest.raises(LeadDataError, match=message):
        profile_export(_write(df, tmp_path / "t.csv"), "Outcome")


def test_encodings_are_sniffed():
    assert sniff_encoding("id;name\n1;José\n".encode("latin-1"))[0] == "latin-1"
    assert sniff_encoding(b"\xef\xbb\xbfid;name\n")[0] == "utf-8"
    assert sniff_encoding("id;name\n1;José\n".encode())[0] == "utf-8"


@pytest.mark.slow
def test_init_then_a_quick_run_with_no_hand_edit(tmp_path):
    """A foreign export: init, then all ten notebooks; the sales-status field (written after
    the call) is kept out of the model and named in the leakage audit."""
    from leadscoring.notebook.runner import QUICK_PARAMETERS, run_pipeline

    dest, _ = init_project(tmp_path / "acme", _write(_english(800, seed=3), tmp_path / "acme.csv"), "Converted", date="Created")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    result = run_pipeline(cfg, dict(QUICK_PARAMETERS), progress=False)
    assert result.status == "ok" and len(result.notebooks) == 10
    audit = pd.read_csv(cfg.path("results_dir") / "leakage_audit.csv").set_index("variable")
    assert audit.loc["Lead Status", "verdict"] == "excluded"
    selected = json.loads((cfg.path("results_dir") / "selected_features.json").read_text())["selected"]
    assert "Lead Status" not in selected
    stakes = pd.read_csv(cfg.path("results_dir") / "leakage_stakes.csv")
    assert len(stakes) == 2 and "Lead Status" in stakes["variables"].iloc[1]
    assert stakes["roc_auc"].iloc[1] > 0.97 > stakes["roc_auc"].iloc[0]  # what the status tag would have faked
    card = (cfg.path("docs_dir") / "model_card.md").read_text()
    leakage = card.split("## Leakage audit")[1]
    assert "Lead Status" in leakage and f"**{stakes['roc_auc'].iloc[1]:.3f}**" in leakage
    metrics = json.loads((cfg.path("results_dir") / "run_metrics.json").read_text())
    assert metrics["validation_roc_auc_with_excluded"] == pytest.approx(stakes["roc_auc"].iloc[1])
    scores = pd.read_csv(cfg.path("results_dir") / "scores.csv", dtype=str)
    assert scores["Prospect ID"].tolist()[:2] == ["P-00000", "P-00001"] and len(scores) == 800
