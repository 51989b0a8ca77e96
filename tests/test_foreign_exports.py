"""`leadscoring init` on exports written the way CRMs in other countries write them: German
and Spanish numbers and dates, Windows-1252 text, ids that are not named "id", dates as Unix
time or Excel serial days, yes/no spelled "Y" or "Sí", placeholders in number columns, notes
with line breaks. Each inference is checked by reading the export back with the drafted
configuration (the reader every later step uses)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscoring.config import load_config
from leadscoring.errors import LeadDataError
from leadscoring.ingest.load import read_leads, validate_file
from leadscoring.ingest.profile import profile_export
from leadscoring.ingest.split import stratified_sample
from leadscoring.scaffold import init_project

N = 600


def _german(n: int = N, seed: int = 1) -> pd.DataFrame:
    """A German CRM export: 'Lead-Nr.' ids with leading zeros, day-first creation dates,
    '.' between thousands and ',' before decimals, Ja/Nein flags, a budget in euros."""
    rng = np.random.default_rng(seed)
    won = rng.random(n) < 0.3
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 365, n)), unit="D")
    staff = rng.choice([12, 350, 1200, 12000, 45000], n)
    budget = np.round(rng.lognormal(6.5, 1.3, n), 1)
    return pd.DataFrame(
        {
            "Lead-Nr.": [f"{i:07d}" for i in range(1, n + 1)],
            "Erstellt am": created.strftime("%d.%m.%Y"),
            "Quelle": rng.choice(["Messe", "Google", "Empfehlung"], n),
            "Mitarbeiter": [f"{s:,}".replace(",", ".") for s in staff],  # 1.200, 12.000: thousands, not decimals
            "Jahresbudget (€)": [f"{b:,.1f}".replace(",", "X").replace(".", ",").replace("X", ".") for b in budget],
            "Besuche": rng.poisson(3 + 2 * won),
            "Newsletter": rng.choice(["Ja", "Nein"], n),
            "Abschluss": np.where(won, "ja", "nein"),
        }
    )


def _write(df: pd.DataFrame, path, sep: str = ";", encoding: str = "utf-8", terminator: str = "\n"):
    path.write_bytes(df.to_csv(sep=sep, index=False, lineterminator=terminator).encode(encoding))
    return path


def _project(tmp_path, df: pd.DataFrame, target: str, **kw):
    export = _write(df, tmp_path / "export.csv", **{k: kw.pop(k) for k in ("sep", "encoding", "terminator") if k in kw})
    dest, draft = init_project(tmp_path / "p", export, target, **kw)
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    return cfg, draft


def test_a_german_export_is_read_as_written(tmp_path):
    df = _german()
    cfg, d = _project(tmp_path, df, "Abschluss", encoding="cp1252", terminator="\r\n", positive="ja")
    assert d.encoding == "cp1252" and "Windows-1252" in d.reasons["encoding"]  # the € of a header
    assert (cfg.data.decimal, cfg.data.thousands) == (",", ".")
    assert cfg.data.id_column == "Lead-Nr." and not cfg.data.id_from_row_number
    assert cfg.data.date_column == "Erstellt am" and cfg.data.date_format == "day_first"
    assert {"Mitarbeiter", "Jahresbudget (€)", "Besuche"} <= set(cfg.data.columns.numeric)
    assert cfg.data.columns.yes_no == ["Newsletter"] and {"Ja", "Nein"} <= {*cfg.data.yes_values, *cfg.data.no_values}
    leads = read_leads(cfg.path("raw_data"), cfg)
    assert leads["Lead-Nr."].tolist()[:2] == ["0000001", "0000002"]  # the CRM's ids, zeros kept
    expected = pd.to_datetime(df["Erstellt am"], format="%d.%m.%Y")
    assert (pd.to_datetime(leads["Erstellt am"]).to_numpy() == expected.to_numpy()).all()  # 05.01. is the 5th of January
    staff = df["Mitarbeiter"].str.replace(".", "", regex=False).astype(float)
    assert (leads["Mitarbeiter"].to_numpy() == staff.to_numpy()).all()  # 12.000 is twelve thousand
    budget = df["Jahresbudget (€)"].str.replace(".", "", regex=False).str.replace(",", ".", regex=False).astype(float)
    assert np.allclose(leads["Jahresbudget (€)"], budget)  # 113,4 and 1.678,5 alike


@pytest.mark.parametrize(
    ("fmt", "style"),
    [("%d/%m/%Y", "day_first"), ("%m/%d/%Y %H:%M", "month_first"), ("%Y-%m-%d", None)],
)
def test_the_order_of_day_and_month_is_told_by_a_value_above_12(tmp_path, fmt, style):
    df = _german().drop(columns="Erstellt am")
    when = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(N) % 365, unit="D")
    df.insert(1, "Fecha de creación", when.strftime(fmt))
    cfg, d = _project(tmp_path, df, "Abschluss", positive="ja")
    assert cfg.data.date_column == "Fecha de creación" and cfg.data.date_format == style
    got = pd.to_datetime(read_leads(cfg.path("raw_data"), cfg)["Fecha de creación"])
    assert (got.dt.normalize().to_numpy() == when.normalize().to_numpy()).all()


def test_dates_with_dots_and_no_day_above_12_are_read_day_first_and_flagged(tmp_path):
    df = _german()
    df["Erstellt am"] = [f"{1 + i % 12:02d}.{1 + i % 12:02d}.2024" for i in range(N)]  # 03.03.2024: either order
    d = profile_export(_write(df, tmp_path / "e.csv", encoding="cp1252"), "Abschluss", positive="ja")
    assert d.date_format == "day_first" and any("Erstellt am" in w and "REVIEW" in w for w in d.warnings)


def test_unix_and_excel_dates_are_dates_not_numbers(tmp_path):
    rng = np.random.default_rng(3)
    when = pd.Timestamp("2023-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 700, N)), unit="D")
    df = pd.DataFrame(
        {
            "created_at": (when - pd.Timestamp("1970-01-01")).total_seconds().astype("int64") + rng.integers(0, 86400, N),
            "first_touch": ((when - pd.Timestamp("1899-12-30")) / pd.Timedelta(days=1)).round(3),
            "visits": rng.poisson(3, N),
            "phone": np.where(rng.random(N) < 0.15, "", rng.integers(600000000, 699999999, N).astype(str)),
            "converted": np.where(rng.random(N) < 0.3, "TRUE", "FALSE"),
        }
    )
    cfg, d = _project(tmp_path, df, "converted", sep=",")
    assert cfg.data.date_column == "created_at" and cfg.data.date_format == "unix_seconds"
    assert "excel serial" in d.left_out["first_touch"] and "phone number" in d.left_out["phone"]
    assert cfg.data.columns.numeric == ["visits"]
    created = pd.to_datetime(read_leads(cfg.path("raw_data"), cfg)["created_at"])
    assert (created.dt.normalize().to_numpy() == when.to_numpy()).all()


def test_the_id_is_found_by_more_names_or_as_the_first_column_and_never_a_model_input(tmp_path):
    df = _german().rename(columns={"Lead-Nr.": "Código"})
    df["Código"] = [f"L{i:05d}" for i in range(N)]
    assert profile_export(_write(df, tmp_path / "a.csv"), "Abschluss", positive="ja").id_column == "Código"

    df = df.rename(columns={"Código": "Chave interna CRM"})  # not named like an id: the first column, to review
    d = profile_export(_write(df, tmp_path / "b.csv"), "Abschluss", positive="ja")
    assert d.id_column == "Chave interna CRM" and "REVIEW" in d.reasons["id"]

    df = _german().rename(columns={"Lead-Nr.": "ID client"})
    df.loc[[5, 9], "ID client"] = df.loc[4, "ID client"]  # two repeated ids: not the id, and never an input
    d = profile_export(_write(df, tmp_path / "c.csv"), "Abschluss", positive="ja")
    assert d.id_column is None and "named like an id" in d.left_out["ID client"]
    assert "ID client" not in d.numeric and any("ID client" in w and "--id" in w for w in d.warnings)


def test_a_french_export_s_id_engagement_and_deal_fields_are_read_from_their_names(tmp_path):
    rng = np.random.default_rng(6)
    won = rng.random(N) < 0.2
    df = pd.DataFrame(
        {
            "Secteur": rng.choice(["Industrie", "Santé", "Commerce"], N),
            "Identifiant": [f"{i:07d}" for i in range(1, N + 1)],  # codes of digits, not the first column
            "Pages vues": rng.poisson(4 + 3 * won),
            "Essai activé": rng.choice(["Oui", "Non"], N),
            "Montant contrat": np.where(won, rng.integers(1000, 9000, N).astype(str), ""),
            "Statut": np.where(won, "Gagné", "Perdu"),
        }
    )
    dest, d = init_project(tmp_path / "p", _write(df, tmp_path / "fr.csv", sep=","), "Statut", positive="Gagné")
    assert d.id_column == "Identifiant" and "named like an id" in d.reasons["id"]
    assert {"Pages vues", "Essai activé"} <= set(d.engagement) and d.fit == ["Secteur", "Montant contrat"]
    assert "Montant contrat" in d.post_contact  # named in the drafted configuration for review
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert {"n/a", "#N/A", "NULL"} <= set(cfg.data.missing_values)  # placeholders a later file may bring

    other = df.rename(columns={"Identifiant": "Clé CRM"})  # unique digit codes named like nothing: no id found
    d2 = profile_export(_write(other, tmp_path / "b.csv", sep=","), "Statut", positive="Gagné")
    assert d2.id_column is None and d2.left_out["Clé CRM"].startswith("an id, perhaps the CRM's (pass --id COLUMN")


def test_a_brazilian_export_s_behaviour_columns_are_engagement():
    from leadscoring.ingest.profile import ENGAGEMENT

    behaviour = ("Baixou e-book", "Tempo no site (min)", "Acessos ao portal", "Cliques no e-mail", "Sessões", "Visualizações")
    for name in (*behaviour, "Aberturas de e-mail", "Último acesso"):
        assert ENGAGEMENT.search(name), name
    for name in ("Cargo", "Tamanho da empresa", "Estado", "Setor", "Contemporâneo", "Renda baixa", "Prioridade baixa"):
        assert not ENGAGEMENT.search(name), name
    for name in ("Data de abertura da empresa", "Acessórios", "Nível de acesso"):
        assert not ENGAGEMENT.search(name), name


def test_yes_no_spellings_and_placeholders_in_numbers_are_configured(tmp_path):
    rng = np.random.default_rng(4)
    df = pd.DataFrame(
        {
            "lead": [f"x{i}" for i in range(N)],
            "opted_in": rng.choice(["Y", "N"], N),
            "acepta": rng.choice(["Sí", "No"], N),
            "employees": np.where(rng.random(N) < 0.1, rng.choice(["n/a", "-", "unknown"], N), rng.integers(1, 500, N).astype(str)),
            "won": rng.choice(["Won", "Lost"], N),
        }
    )
    cfg, d = _project(tmp_path, df, "won", sep=",")
    assert {"opted_in", "acepta"} <= set(cfg.data.columns.yes_no) and "employees" in cfg.data.columns.numeric
    assert {"Y", "Sí"} <= set(cfg.data.yes_values) and "N" in cfg.data.no_values
    assert {"n/a", "-", "unknown"} <= set(cfg.data.missing_values)
    leads = read_leads(cfg.path("raw_data"), cfg)
    assert leads["employees"].isna().sum() == (df["employees"].isin(["n/a", "-", "unknown"])).sum()


def test_leads_without_an_outcome_are_warned_by_init_and_named_by_validate(tmp_path):
    df = _german()
    df.loc[[10, 20, 30], "Abschluss"] = ""
    cfg, d = _project(tmp_path, df, "Abschluss", positive="ja")
    assert any(w.startswith("3 lead(s) have no value in 'Abschluss'") for w in d.warnings)
    with pytest.raises(LeadDataError) as err:
        validate_file(cfg.path("raw_data"), cfg)
    assert "'(empty)' (line 12)" in str(err.value) and "3 lead(s) have no outcome: remove them" in str(err.value)


def test_notes_with_line_breaks_and_a_late_windows_1252_byte(tmp_path):
    df = _german(2000).rename(columns={"Jahresbudget (€)": "Jahresbudget EUR"})  # ASCII up to the Köln
    df["Notiz"] = [f'Anruf {i}; sagt:\n"vielleicht"' if i % 7 == 0 else f"Notiz {i}" for i in range(2000)]
    df.loc[1900, "Quelle"] = "Köln"  # past the first 64 KB: the rest of the file is ASCII
    d = profile_export(_write(df, tmp_path / "e.csv", encoding="cp1252"), "Abschluss", positive="ja")
    assert d.separator == ";" and d.encoding == "cp1252" and "UTF-8 until line" in d.reasons["encoding"]


def test_a_quick_sample_keeps_enough_of_a_rare_outcome():
    df = pd.DataFrame({"y": [1] * 60 + [0] * 2940, "x": range(3000)})
    plain = stratified_sample(df, 1500, "y", seed=0)
    kept = stratified_sample(df, 1500, "y", seed=0, min_per_class=40)
    assert plain["y"].sum() == 30 and kept["y"].sum() == 40 and kept["x"].is_unique
    rare = pd.DataFrame({"y": [1] * 5 + [0] * 9995, "x": range(10000)})
    assert stratified_sample(rare, 100, "y", seed=0, min_per_class=20)["y"].sum() == 5  # none drawn: all five added


def test_names_that_look_like_an_id_date_or_phone_but_are_not(tmp_path):
    rng = np.random.default_rng(6)
    when = pd.date_range("2024-01-01", periods=N, freq="D")
    df = pd.DataFrame(
        {
            "Day": when.strftime("%Y-%m-%d"),  # unique and first, but a date: not the id
            "Prospect ID": [f"P{i}" for i in range(N)],
            "Lead Number": range(1000, 1000 + N),  # a second id, unique: no warning to mend it
            "Mobile Sessions": rng.integers(0, 10, N),  # a count, not a phone number
            "won": rng.choice(["yes", "no"], N),
        }
    )
    d = profile_export(_write(df, tmp_path / "e.csv", sep=","), "won")
    assert d.id_column == "Prospect ID" and d.date_column == "Day" and "Mobile Sessions" in d.numeric
    assert "second id" in d.left_out["Lead Number"] and not any("Lead Number" in w for w in d.warnings)


def test_whole_numbers_grouped_by_dots_with_no_decimals_anywhere_are_flagged(tmp_path):
    df = _german()[["Lead-Nr.", "Mitarbeiter", "Besuche", "Abschluss"]]
    d = profile_export(_write(df, tmp_path / "e.csv"), "Abschluss", positive="ja")
    assert d.decimal == "." and any("REVIEW data.decimal and data.thousands" in w for w in d.warnings)


def test_a_header_with_a_line_separator_character_still_makes_a_valid_configuration(tmp_path):
    df = _german().rename(columns={"Quelle": "Quelle\u2028neu", "Jahresbudget (€)": "Jahresbudget"})
    cfg, _ = _project(tmp_path, df, "Abschluss", positive="ja")
    assert "Quelle\u2028neu" in cfg.data.columns.categorical


def test_a_header_with_a_control_character_still_makes_a_valid_configuration(tmp_path):
    """Bytes of no Windows-1252 meaning (0x81) are read as Latin-1, whose character there is a
    control YAML cannot hold: the drafted configuration escapes it and keeps the name exact."""
    df = _german().rename(columns={"Quelle": "Quelle\x81", "Jahresbudget (€)": "Jahresbudget"})
    export = tmp_path / "export.csv"
    export.write_bytes(df.to_csv(sep=";", index=False).encode("latin-1"))
    dest, d = init_project(tmp_path / "p", export, "Abschluss", positive="ja")
    cfg = load_config(dest / "01_Documentos" / "config.yaml")
    assert d.encoding == "latin-1" and "Quelle\x81" in cfg.data.columns.categorical
    assert validate_file(cfg.path("raw_data"), cfg) == N


def test_amounts_with_a_currency_sign_are_numbers(tmp_path):
    df = _german()
    amounts = np.random.default_rng(5).integers(100, 90000, N)
    df["Presupuesto"] = [f"{a:,} €".replace(",", ".") if i % 2 else f"€{a}" for i, a in enumerate(amounts)]
    cfg, d = _project(tmp_path, df, "Abschluss", positive="ja")
    assert "Presupuesto" in cfg.data.columns.numeric, d.left_out.get("Presupuesto")
    assert (read_leads(cfg.path("raw_data"), cfg)["Presupuesto"].to_numpy() == amounts).all()


def test_amounts_in_reais_dollars_of_a_country_and_iso_codes_are_numbers(tmp_path):
    """``R$ 1.234,56`` (Brazil), ``US$``, ``1.200 EUR``: the currency is read past as a sign is."""
    df = _german()
    cents = np.random.default_rng(6).integers(-900_000, 9_000_000, N)  # about a tenth negative
    forms = ["R$ {}", "{} R$", "US$ {}", "{} eur", "BRL {}"]
    brazilian = [f"{abs(c) / 100:,.2f}".replace(",", "X").replace(".", ",").replace("X", ".") for c in cents]
    signs = ["-" if c < 0 else "" for c in cents]
    df["Receita anual"] = [s + forms[i % 5].format(b) for i, (s, b) in enumerate(zip(signs, brazilian, strict=True))]
    cfg, d = _project(tmp_path, df, "Abschluss", positive="ja")
    assert "Receita anual" in cfg.data.columns.numeric, d.left_out.get("Receita anual")
    assert np.allclose(read_leads(cfg.path("raw_data"), cfg)["Receita anual"].to_numpy(), cents / 100)


def test_dates_with_offsets_that_change_are_read_in_utc():
    """Summer and winter time in one column, or Z beside naive times: pandas refuses to mix them."""
    from leadscoring.ingest.values import parse_dates

    got = parse_dates(pd.Series(["2024-01-15T10:00+01:00", "2024-07-15T10:00+02:00", None]))
    assert got.dt.tz is not None and got.iloc[0] == pd.Timestamp("2024-01-15T09:00Z") and pd.isna(got.iloc[2])
    mixed = parse_dates(pd.Series(["15.01.2024", "2024-07-15T10:00+02:00"]), "day_first")
    assert mixed.tolist() == [pd.Timestamp("2024-01-15T00:00Z"), pd.Timestamp("2024-07-15T08:00Z")]


def test_a_space_between_thousands_as_spreadsheets_write_it(tmp_path):
    """French exports group thousands with a space, often a no-break space (U+00A0 or U+202F)."""
    rng = np.random.default_rng(7)
    revenue = np.round(rng.lognormal(8, 1.5, N), 1)
    staff = rng.choice([8, 1200, 15000], N)
    df = pd.DataFrame(
        {
            "Référence": [f"R{i}" for i in range(N)],
            "Chiffre d'affaires": [f"{r:,.1f}".replace(",", "\u202f").replace(".", ",") for r in revenue],
            "Effectif": [f"{s:,}".replace(",", "\u00a0") for s in staff],
            "Résultat": rng.choice(["Gagné", "Perdu"], N),
        }
    )
    cfg, _ = _project(tmp_path, df, "Résultat", positive="Gagné")
    assert (cfg.data.decimal, cfg.data.thousands) == (",", " ")
    leads = read_leads(cfg.path("raw_data"), cfg)
    assert np.allclose(leads["Chiffre d'affaires"], revenue) and (leads["Effectif"].to_numpy() == staff).all()


@pytest.mark.parametrize("with_id", [True, False])
def test_validation_leads_are_written_as_the_export_writes_them(tmp_path, with_id):
    """Notebook 01's validation_leads.csv: read back with the project's configuration, the same
    leads (a German export: '1.200' staff, '1.234,5' budgets, Ja/Nein, cp1252), not a tenfold
    budget read from pandas' '1234.5' or a refused 'row_number' column."""
    from leadscoring.ingest.load import write_export_records

    df = _german() if with_id else _german().drop(columns="Lead-Nr.")
    cfg, _ = _project(tmp_path, df, "Abschluss", encoding="cp1252", positive="ja")
    leads = read_leads(cfg.path("raw_data"), cfg)
    chosen = leads.sample(50, random_state=0)
    dest = write_export_records(cfg.path("raw_data"), cfg, chosen[cfg.data.id_column], tmp_path / "v.csv", drop=["Abschluss"])
    back = read_leads(dest, cfg, require_target=False)
    assert (dest.read_bytes().decode("cp1252").splitlines()[0]).startswith("Lead-Nr.;" if with_id else "Erstellt am;")
    expected = chosen.drop(columns=["Abschluss"]).reset_index(drop=True)
    if not with_id:  # a file of its own numbers its leads afresh
        expected[cfg.data.id_column] = [str(i) for i in range(1, 51)]
    pd.testing.assert_frame_equal(back[expected.columns], expected, check_dtype=False)


def test_a_typed_parquet_export_with_numeric_ids_is_read_and_written_back(tmp_path):
    """The same German export as parquet, with typed columns: whole-number ids are ids (they
    raised AttributeError), and its validation leads written as CSV read back as the same leads
    with the project's ',' decimals and cp1252."""
    from leadscoring.ingest.load import write_export_records

    df = _german()
    cfg, _ = _project(tmp_path, df, "Abschluss", encoding="cp1252", positive="ja")
    typed = df.assign(
        **{
            "Lead-Nr.": df["Lead-Nr."].astype(int),
            "Mitarbeiter": df["Mitarbeiter"].str.replace(".", "", regex=False).astype(int),
            "Jahresbudget (€)": df["Jahresbudget (€)"].str.replace(".", "", regex=False).str.replace(",", ".").astype(float),
        }
    )
    source = tmp_path / "export.parquet"
    typed.to_parquet(source, index=False)
    leads = read_leads(source, cfg)
    assert leads["Lead-Nr."].tolist()[:3] == ["1", "2", "3"]
    chosen = leads.sample(40, random_state=1)
    dest = write_export_records(source, cfg, chosen["Lead-Nr."], tmp_path / "v.csv", drop=["Abschluss"])
    back = read_leads(dest, cfg, require_target=False)
    expected = chosen.drop(columns=["Abschluss"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(back[expected.columns], expected, check_dtype=False)
