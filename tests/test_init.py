"""`leadscoring init` on exports nobody here has tuned to: what it infers, and the project
folder it creates (validated by the same reader and schema as every other path)."""

from __future__ import annotations

import codecs
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.config import ConfigError, load_config
from leadscoring.errors import LeadDataError
from leadscoring.formats import NumberStyle, fixed
from leadscoring.ingest.load import validate_file
from leadscoring.ingest.profile import profile_export, sniff_encoding
from leadscoring.ingest.reader import read_raw
from leadscoring.scaffold import init_project, shipped_notebooks

from .browser import CHROMIUM, page_problems, screenshot


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
    assert set(d.left_out) == {"Notes"} and d.date_column == "Created" and "creation date" in d.reasons["date"]
    assert "free text" in d.left_out["Notes"] and d.post_contact == {}  # named by init, with the audit's stems
    assert "Time On Website" in d.engagement and "Lead Source" in d.fit


def test_init_creates_a_valid_project_and_keeps_the_export(tmp_path, capsys):
    src = _write(_english(), tmp_path / "crm.csv", sep=",", encoding="utf-8-sig")
    code = main(["init", str(tmp_path / "client"), "--input", str(src), "--target", "Converted", "--id", "Prospect ID"])
    out = capsys.readouterr().out
    assert code == 0 and "REVIEW named like a post-contact field (the leakage audit decides): Lead Status" in out
    assert "creation date: 'Created'" in out
    project = tmp_path / "client"
    command = out.split(f"then in {project}: `", 1)[1].split(" validate`", 1)[0]  # runnable there, venv not on PATH
    assert Path(command).is_absolute() and Path(command).is_file()
    raw = project / "02_Datos" / "01_Originales" / "crm.csv"
    assert raw.read_bytes() == src.read_bytes() and not raw.stat().st_mode & 0o222
    assert sorted(p.name for p in (project / "03_Notebooks").iterdir()) == [p.name for p in shipped_notebooks()]
    assert len(shipped_notebooks()) == 10
    cfg = load_config(project / "01_Documentos" / "config.yaml")
    # a name alone keeps nothing out: the audit weighs the data (and marks the name for review)
    assert cfg.data.separator == "," and cfg.data.post_contact == [] and not cfg.data.use_post_contact_fields
    assert "Lead Status (its name reads like" in (project / "01_Documentos" / "config.yaml").read_text()
    leads = validate_file(cfg.path("raw_data"), cfg)
    assert leads == 400 and cfg.data.date_column == "Created"
    # grades that fit any conversion rate; reports in the export's own number style
    assert cfg.scoring.grades.method == "shares" and cfg.report.number_style == NumberStyle(",", ".")
    rate = (pd.read_csv(src, dtype=str)["Converted"] == "yes").mean()  # buckets drafted from the conversion rate
    assert [b.min_score for b in cfg.scoring.buckets] == [min(80, round(300 * rate)), min(50, round(150 * rate)), 0]
    with pytest.raises(ConfigError, match="already exists"):
        init_project(project, src, "Converted")


def test_init_writes_the_analyst_notes_file_with_a_section_per_notes_cell(tmp_path):
    from leadscoring.config import analyst_note

    src = _write(_english(), tmp_path / "crm.csv", sep=",")
    project, _ = init_project(tmp_path / "client", src, "Converted")
    notes = project / "01_Documentos" / "analyst_notes.md"
    lines = notes.read_text(encoding="utf-8").splitlines()
    assert [line for line in lines if line.startswith("## ")] == [
        "## 03 EDA",
        "## 06 Variable selection",
        "## 07 ML scoring",
        "## 08 Segmentation",
    ]
    for heading in ("## 03 EDA", "## 08 Segmentation"):  # a one-line hint under each heading
        assert "we saw X" in lines[lines.index(heading) + 2]
    cfg = load_config(project / "01_Documentos" / "config.yaml")
    assert cfg.path("analyst_notes") == notes and analyst_note(cfg, "08") is None  # hints are not notes


def test_labels_are_mid_sentence_words_and_keep_a_language_s_capitals():
    from leadscoring.ingest.profile import column_label

    assert [column_label(c) for c in ("Time On Website", "lead_source", "TOTAL_VISITS")] == [
        "time on website",
        "lead source",
        "total visits",
    ]
    assert [column_label(c) for c in ("Unternehmensgröße", "Anrede")] == ["Unternehmensgröße", "Anrede"]  # German nouns


def test_buckets_are_drafted_from_the_conversion_rate():
    from leadscoring.scaffold import bucket_cutoffs

    assert [bucket_cutoffs(r) for r in (0.38, 0.08, 0.005, None)] == [(80, 50), (24, 12), (2, 1), (80, 50)]


def test_the_export_s_yes_and_no_words_come_first(tmp_path):
    df = _english()
    df["Do Not Email"] = df["Do Not Email"].map({"Yes": "Ja", "No": "Nein"})
    dest, _ = init_project(tmp_path / "p", _write(df, tmp_path / "crm.csv"), "Converted")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert (cfg.data.yes_values[0], cfg.data.no_values[0]) == ("Ja", "Nein")  # what the reasons then write


def test_placeholders_in_other_languages_mean_missing(tmp_path):
    df = _english()
    df["Lead Source"] = df["Lead Source"].replace({"Select": "k.A.", "Referral": "(not set)"})
    d = profile_export(_write(df, tmp_path / "crm.csv"), "Converted")
    assert sorted(d.missing_values) == ["(not set)", "k.A."] and "Lead Source" in d.categorical


def test_init_with_a_creation_date(tmp_path):
    dest, d = init_project(tmp_path / "p", _write(_english(), tmp_path / "crm.csv"), "Converted", date="Created")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert cfg.data.date_column == "Created" and "Created" not in d.left_out
    assert validate_file(cfg.path("raw_data"), cfg) == 400


@pytest.mark.parametrize(("date", "why"), [("Craeted", "no such column in the export"), ("Lead Source", "do not read as dates")])
def test_init_refuses_a_date_column_that_is_not_one(tmp_path, date, why):
    with pytest.raises(ConfigError, match=rf"crm.csv: --date '{date}': .*{why}; date columns found: \['Created'\]"):
        init_project(tmp_path / "p", _write(_english(), tmp_path / "crm.csv"), "Converted", date=date)
    assert not (tmp_path / "p").exists()


def test_init_date_none_opts_out(tmp_path):
    dest, d = init_project(tmp_path / "p", _write(_english(), tmp_path / "crm.csv"), "Converted", date="NONE")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert cfg.data.date_column is None and "date" in d.left_out["Created"]


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
        (["Client", "Perdu", "En cours"] * 4, r"exactly two values .* some mark leads still open"),
        (["open", "closed"] * 5, "pass --positive"),
    ],
)
def test_target_problems_are_one_line(tmp_path, values, message):
    df = pd.DataFrame({"x": np.arange(len(values)), "Outcome": values})
    with pytest.raises(LeadDataError, match=message):
        profile_export(_write(df, tmp_path / "t.csv"), "Outcome")


def test_encodings_are_sniffed():
    assert sniff_encoding("id;name\n1;José\n".encode("cp1252"))[0] == "cp1252"  # what Excel writes in Western Europe
    assert sniff_encoding("id;Budget (€)\n1;Müller – ok\n".encode("cp1252"))[0] == "cp1252"
    assert sniff_encoding(b"id;name\n1;Jos\xe9\x81\n")[0] == "latin-1"  # 0x81 means nothing in Windows-1252
    assert sniff_encoding(b"\xef\xbb\xbfid;name\n")[0] == "utf-8"
    assert sniff_encoding("id;name\n1;José\n".encode())[0] == "utf-8"


#: The client's own score buckets, which a consultant adds to the drafted configuration.
CLIENT_BUCKETS = """  buckets:
    - {name: Priority, min_score: 70, action: Call today}
    - {name: Follow-up, min_score: 30, action: Email sequence}
    - {name: Later, min_score: 0, action: Newsletter}
"""  # in place of the drafted ones


@pytest.mark.slow
def test_init_then_a_quick_run_of_all_notebooks(tmp_path):
    """A foreign export (comma-separated, English): init drafts a configuration that passes
    `validate` as it is; the consultant only names the client's score buckets; then all ten
    notebooks run. The sales-status field (written after the call) is kept out of the model
    and named in the leakage audit, and no product speaks of the shipped data."""
    from leadscoring.run import QUICK_PARAMETERS, run_pipeline

    from .test_any_export import SHIPPED_WORDS, products_text

    export = _write(_english(800, seed=3), tmp_path / "acme.csv", sep=",")
    dest, _ = init_project(tmp_path / "acme", export, "Converted", date="Created")
    config = dest / "01_Documentos" / "config.yaml"
    assert validate_file(export, load_config(config)) == 800  # the draft, untouched
    drafted = re.search(r"  buckets:\n(    - .*\n)+", config.read_text(encoding="utf-8"))
    config.write_text(config.read_text(encoding="utf-8").replace(drafted.group(0), CLIENT_BUCKETS), encoding="utf-8")
    cfg = load_config(config)
    result = run_pipeline(cfg, dict(QUICK_PARAMETERS), progress=False)
    assert result.status == "ok" and len(result.notebooks) == 10
    assert len(list((cfg.path("results_dir") / "latest" / "notebooks").glob("*.ipynb"))) == 10
    text = products_text(cfg.root)
    for word in SHIPPED_WORDS:
        assert word not in text, f"'{word}' (shipped data) appears in a product of a foreign export"
    assert "Lead Source" in text  # the client's columns
    audit = pd.read_csv(cfg.path("results_dir") / "leakage_audit.csv").set_index("variable")
    assert audit.loc["Lead Status", "verdict"] == "excluded"
    selected = json.loads((cfg.path("results_dir") / "selected_features.json").read_text())["selected"]
    assert "Lead Status" not in selected
    rules = pd.read_csv(cfg.path("results_dir") / "client_rules.csv")  # nor in the marketing points
    assert "Lead Status" not in set(rules["variable"]) and set(rules["variable"]) <= set(cfg.data.columns.all)
    segments = json.loads((cfg.path("models_dir") / "segment_model.json").read_text())  # nor in the segments
    assert "Lead Status" not in segments["features"]
    stakes = pd.read_csv(cfg.path("results_dir") / "leakage_stakes.csv")
    assert len(stakes) == 2 and "Lead Status" in stakes["variables"].iloc[1]
    assert stakes["roc_auc"].iloc[1] > 0.97 > stakes["roc_auc"].iloc[0]  # what the status tag would have faked
    comparison = pd.read_csv(cfg.path("results_dir") / "validation_comparison.csv").set_index("model")
    assert comparison.loc["plain logistic regression", "roc_auc"] < 0.97  # the reference reads the model's variables only
    card = (cfg.path("docs_dir") / "model_card.md").read_text()
    assert "No field is configured as known only after the sales contact" in card  # the audit found it: no configuration
    leakage = card.split("## Leakage audit")[1]
    faked = fixed(stakes["roc_auc"].iloc[1], style=cfg.report.number_style)  # the export's decimal comma
    assert "Lead Status" in leakage and f"**{faked}**" in leakage and "," in faked
    metrics = json.loads((cfg.path("results_dir") / "run_metrics.json").read_text())
    assert metrics["validation_roc_auc_with_excluded"] == pytest.approx(stakes["roc_auc"].iloc[1])
    scores = pd.read_csv(cfg.path("results_dir") / "scores.csv", dtype=str)
    assert scores["Prospect ID"].tolist()[:2] == ["P-00000", "P-00001"] and len(scores) == 800
    assert set(scores["bucket"]) <= {"Priority", "Follow-up", "Later"}
    if CHROMIUM is not None:  # the client summary and index of a foreign project read well too
        labels = cfg.model_data.labels
        latest = cfg.path("results_dir") / "latest"
        reports = [latest / "html" / f"{name}.html" for name in ("08_segmentation", "09_evaluation")]
        for page in (cfg.path("results_dir") / "client_report.html", latest / "index.html", *reports):
            assert page_problems(page, labels) == []
            screenshot(page, result.run_dir / "screenshots" / f"{page.stem}.png")


def test_init_never_deletes_a_folder_it_did_not_create(tmp_path, monkeypatch):
    """Defect 2: `init clients/acme` removed an existing clients/.acme.init/ (its old scratch name)."""
    src = _write(_english(), tmp_path / "crm.csv")
    mine = tmp_path / ".acme.init"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    dest, _ = init_project(tmp_path / "acme", src, "Converted")
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert (dest / "01_Documentos" / "config.yaml").is_file()
    if os.name != "nt":  # an ordinary folder, not the 0700 of a temporary one
        umask = os.umask(0)
        os.umask(umask)
        assert dest.stat().st_mode & 0o777 == 0o777 & ~umask
    # A failed init removes its own folder, and only that.
    monkeypatch.setattr("leadscoring.scaffold.shipped_notebooks", lambda: [tmp_path / "missing.ipynb"])
    with pytest.raises(FileNotFoundError):
        init_project(tmp_path / "beta", src, "Converted")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".acme.init", "acme", "crm.csv"]
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the export is empty"),
        (b"\n\n  \n", "the export is empty"),
        (b"\xef\xbb\xbf", "the export is empty"),  # a byte-order mark and nothing else
        (b"Prospect ID;Converted\n", "the export has a header but no rows"),
        (b"Prospect ID;Converted\n\n\n", "the export has a header but no rows"),
    ],
)
def test_an_empty_export_is_called_empty(tmp_path, capsys, content, message):
    """Defect 14: an empty export to init said "cannot tell the separator"."""
    src = tmp_path / "crm.csv"
    src.write_bytes(content)
    with pytest.raises(LeadDataError, match=rf"^crm\.csv: {message}"):
        profile_export(src, "Converted")
    assert main(["init", str(tmp_path / "p"), "--input", str(src), "--target", "Converted"]) == 2
    err = capsys.readouterr().err.strip()
    assert "crm.csv" in err and message in err and "\n" not in err and not (tmp_path / "p").exists()


def _wide(df: pd.DataFrame, mark: bytes, codec: str) -> bytes:
    return mark + df.to_csv(sep=";", index=False, lineterminator="\n").encode(codec)


@pytest.mark.parametrize(
    ("mark", "codec", "sniffed"),
    [
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16"),
        (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32"),
        (b"", "utf-16-le", "utf-16-le"),  # no byte-order mark: told by its NUL bytes
        (b"", "utf-16-be", "utf-16-be"),
    ],
)
def test_a_utf16_export_is_read_as_utf16(tmp_path, mark, codec, sniffed):
    """Defect 14: a UTF-16 export to init said "target column 'id' not found; the export has
    ['ÿþi\\x00d\\x00', …]"; it is read (the drafted encoding is one the reader reads)."""
    df = _english(60)
    df.loc[0, "Notes"] = "José, señal"
    src = tmp_path / "crm.csv"
    src.write_bytes(_wide(df, mark, codec))
    dest, d = init_project(tmp_path / "p", src, "Converted", id_column="Prospect ID")
    assert d.encoding == sniffed and d.rows == 60 and d.id_column == "Prospect ID"
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert cfg.data.encoding == sniffed and validate_file(cfg.path("raw_data"), cfg) == 60
    leads = read_raw(cfg.path("raw_data"), cfg)  # every column, as text
    assert leads["Prospect ID"].tolist()[:2] == ["P-00000", "P-00001"] and leads["Notes"].iloc[0] == "José, señal"


def test_undecodable_or_binary_exports_are_one_line_errors(tmp_path):
    """Defect 14: NUL-heavy bytes of no text encoding, or a UTF-16 mark read with another
    given encoding, are refused naming the file and the encoding."""
    binary = tmp_path / "crm.xls"
    binary.write_bytes(b"\xd0\xcf\x11\xe0" + bytes(range(7)) * 200 + b"\x00" * 2000)
    with pytest.raises(LeadDataError, match=r"^crm\.xls: \d+ of its first \d+ bytes are NUL: not a text \(CSV\) export"):
        profile_export(binary, "Converted")
    src = tmp_path / "crm.csv"
    src.write_bytes(_wide(_english(20), codecs.BOM_UTF16_LE, "utf-16-le"))
    with pytest.raises(LeadDataError, match=r"^crm\.csv: UTF-16 with a byte-order mark, not latin-1 as given"):
        profile_export(src, "Converted", encoding="latin-1")
    with pytest.raises(LeadDataError, match=r"^crm\.csv: 'klingon' \(--encoding\) is not a known text encoding"):
        profile_export(src, "Converted", encoding="klingon")


def _italian(n: int = 600, seed: int = 3) -> pd.DataFrame:
    """An Italian B2B export: its reference first, provinces as two-letter codes (NA is
    Naples), a turnover grouped in thousands (1.250) written "n.d." when unknown, a head
    count written "ignoto" when unknown, a discount with a decimal comma, company names, a
    creation date beside a contract date filled in for won leads only, and the client's own
    outcome words."""
    rng = np.random.default_rng(seed)
    won = rng.random(n) < 0.3
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D")
    return pd.DataFrame(
        {
            "Rif. Pratica": [f"PR-2024-{i:05d}" for i in range(n)],
            "Provincia": rng.choice(["MI", "RM", "NA", "TO", "GE"], n),
            "Fatturato annuo": np.where(
                rng.random(n) < 0.15, "n.d.", [f"{x:,.0f}".replace(",", ".") for x in rng.gamma(2, 2e5, n)]
            ),
            "Azienda": [f"Azienda {rng.integers(0, 250)} S.r.l." for _ in range(n)],
            "Dipendenti": np.where(rng.random(n) < 0.1, "ignoto", rng.integers(1, 500, n).astype(str)),
            "Sconto": [f"{x:.1f}".replace(".", ",") for x in rng.uniform(0, 30, n)],
            "Data Creazione": created.strftime("%d/%m/%Y"),
            "Data firma contratto": np.where(won, (created + pd.Timedelta(days=40)).strftime("%d/%m/%Y"), ""),
            "Esito": np.where(won, "Vinto", "Perso"),
        }
    )


def test_an_italian_export_s_conventions_are_read(tmp_path):
    """Its reference is the id, Vinto reads as converted, NA stays Naples, "n.d." is a
    missing turnover (said for review), company names are no input, and the creation date
    is the one named so, not the contract's."""
    d = profile_export(_write(_italian(), tmp_path / "esportazione.csv", sep="|"), "Esito")
    assert d.id_column == "Rif. Pratica" and (d.positive, d.negative) == ("Vinto", "Perso")
    assert "Provincia" in d.categorical and "NA" not in d.missing_values and "read as a code" in d.reasons["Provincia"]
    assert "Fatturato annuo" in d.numeric and "n.d." in d.missing_values and (d.decimal, d.thousands) == (",", ".")
    assert "Dipendenti" in d.numeric and "ignoto" in d.missing_values
    assert any("'Dipendenti': ['ignoto'] read as missing" in w and "REVIEW" in w for w in d.warnings)
    assert "Azienda" not in d.categorical and "mostly rare values" in d.left_out["Azienda"]
    assert d.date_column == "Data Creazione" and "Data firma contratto" in d.left_out


def test_the_one_date_filled_in_for_every_lead_is_the_creation_date(tmp_path):
    df = _italian().rename(columns={"Data Creazione": "Giorno", "Data firma contratto": "Data evento"})
    d = profile_export(_write(df, tmp_path / "esportazione.csv", sep="|"), "Esito")
    assert d.date_column == "Giorno" and "only date filled in for nearly every lead" in d.reasons["date"]
    assert "REVIEW" in d.reasons["date"]


@pytest.mark.parametrize(("yes", "no"), [("Sim", "Não"), ("Ja", "Nein"), ("Oui", "Non")])
def test_a_yes_no_target_in_another_language_reads_its_yes_as_converted(yes, no):
    from leadscoring.ingest.profile import infer_target

    df = pd.DataFrame({"Convertido": [yes, no, no, no, " " + yes]})
    positive, negative, why = infer_target(df, "Convertido", None)
    assert (positive, negative) == (yes, no) and why.startswith(f"{yes!r} reads as converted; 40.0%")


def test_a_target_whose_converted_value_cannot_be_told_names_the_option_and_a_value():
    from leadscoring.ingest.profile import infer_target

    df = pd.DataFrame({"stage": ["Alpha", "Beta", "Beta"]})
    with pytest.raises(
        LeadDataError,
        match=r"^target column 'stage': cannot tell which of \['Alpha', 'Beta'\] means 'converted'; pass --positive VALUE \(e\.g",
    ):
        infer_target(df, "stage", None)
