"""One reader, one set of rules: what `validate`, `score`, `read_leads` and the dask engine
do with awkward exports (byte-order mark, compression, embedded line breaks, short rows,
decimal commas), and the one-line errors the CLI prints for bad input or output paths."""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

from leadscoring.cli import main
from leadscoring.config import load_config
from leadscoring.errors import LeadDataError, OutputPathError
from leadscoring.ingest.load import read_leads, validate_file
from leadscoring.ingest.reader import iter_raw_chunks
from leadscoring.serving.batch import score_file

from .conftest import write_project


@pytest.fixture()
def project(tmp_path, small_models):
    """A temporary project with the small models in its models folder."""
    cfg_path = write_project(tmp_path)
    shutil.copytree(small_models, tmp_path / "04_Modelos")
    return cfg_path


@pytest.fixture()
def export(sample):
    """30 leads in the raw layout as text, ids with leading zeros."""
    df = sample.drop(columns="compra").head(30).astype(object).where(lambda d: d.notna(), "")
    df["id"] = [f"00{i:06d}" for i in range(30)]
    return df


def _csv(df: pd.DataFrame, sep: str = ";") -> str:
    return df.to_csv(sep=sep, index=False, lineterminator="\n")


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_score_warns_when_the_file_lacks_a_field_the_model_learned_from(project, sample, tmp_path, capsys):
    """New leads exported without a field (empty for all of them) that the training leads had:
    the scores are written, and the command says which field the model reads as missing."""
    from leadscoring.config import load_config

    cfg = load_config(project)
    column = "tiempo_en_site_total"
    leads = sample.drop(columns=cfg.data.target_column).head(120).assign(**{column: None})
    leads.to_csv(tmp_path / "new.csv", sep=";", index=False)

    def score(name: str) -> tuple[int, str]:
        code, out, _ = _cli(
            capsys,
            "--config",
            str(project),
            "score",
            "--input",
            str(tmp_path / name),
            "--output",
            str(tmp_path / f"scores_{name}"),
            "--no-progress",
            "--no-history",
        )
        return code, out

    code, out = score("new.csv")
    label = cfg.model_data.labels.get(column, column)
    assert code == 0 and f"WARNING: {label} is empty for 100 % of these leads, against " in out
    built = [d for d, pair in cfg.features.sources.items() if column in pair]  # features computed from it
    assert built and not any(f"WARNING: {cfg.model_data.labels.get(d, d)} is empty" in out for d in built)
    sample.drop(columns=cfg.data.target_column).head(120).to_csv(tmp_path / "whole.csv", sep=";", index=False)
    code, out = score("whole.csv")
    assert code == 0 and "WARNING" not in out


def test_a_parquet_column_of_lists_is_one_line(project, export, tmp_path, capsys):
    df = pd.concat([export] * 10, ignore_index=True).astype(str)  # above 64 leads, where a list once raised a TypeError
    df["id"] = [f"{i:06d}" for i in range(len(df))]
    column = df.columns[1]
    df[column] = [["a", "b"]] * len(df)
    df.to_parquet(tmp_path / "nested.parquet", index=False)
    code, _, err = _cli(capsys, "--config", str(project), "validate", "--input", str(tmp_path / "nested.parquet"), "--no-target")
    line = _one_line_error(code, err)
    assert f"nested.parquet: column '{column}' holds list<" in line
    df[column] = export[column].iloc[0]  # the configured column is one value again; an extra one holds lists
    df.assign(tags=[["a", "b"]] * len(df)).to_parquet(tmp_path / "extra.parquet", index=False)
    code, _, err = _cli(capsys, "--config", str(project), "validate", "--input", str(tmp_path / "extra.parquet"), "--no-target")
    assert "holds list" not in err and "tags" in err  # judged as any extra column (data.allow_extra_columns)


def test_bom_and_leading_zero_ids_survive_every_path(project, export, tmp_path, capsys):
    cfg = load_config(project)
    src = tmp_path / "bom.csv"
    src.write_bytes(b"\xef\xbb\xbf" + _csv(export).encode())
    code, out, _ = _cli(capsys, "--config", str(project), "validate", "--input", str(src), "--no-target")
    assert code == 0 and "30 leads" in out
    assert read_leads(src, cfg, require_target=False)["id"].tolist() == export["id"].tolist()
    code, _, _ = _cli(
        capsys, "--config", str(project), "score", "--input", str(src), "--output", str(tmp_path / "s.csv"), "--no-progress"
    )
    assert code == 0
    scored = pd.read_csv(tmp_path / "s.csv", dtype=str, keep_default_na=False)
    assert scored["id"].tolist() == export["id"].tolist()  # "00000007", not 7


def test_validate_and_score_agree_on_short_rows_and_compression(project, export, tmp_path, capsys):
    text = _csv(export).splitlines()
    text[5] = text[5].rsplit(";", 1)[0]  # the 5th lead (line 6) lacks its last field
    short = tmp_path / "short.csv"
    short.write_text("\n".join(text) + "\n", encoding="utf-8")
    for cmd in (
        ["validate", "--input", str(short), "--no-target"],
        ["score", "--input", str(short), "--output", str(tmp_path / "o.csv"), "--no-progress"],
    ):
        line = _one_line_error(*_cli(capsys, "--config", str(project), *cmd)[::2])
        assert "short.csv: line 6 has 19 field(s) but the header has 20" in line
    assert not (tmp_path / "o.csv").exists()

    gz = tmp_path / "leads.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(_csv(export))
    code, out, _ = _cli(capsys, "--config", str(project), "validate", "--input", str(gz), "--no-target")
    assert code == 0 and "30 leads" in out
    code, out, _ = _cli(
        capsys, "--config", str(project), "score", "--input", str(gz), "--output", str(tmp_path / "gz.csv"), "--no-progress"
    )
    assert code == 0 and len(pd.read_csv(tmp_path / "gz.csv")) == 30


def test_line_numbers_after_embedded_line_breaks_and_in_later_chunks(project, export, tmp_path):
    cfg = load_config(project)
    df = pd.concat([export] * 10, ignore_index=True)
    df["id"] = [f"L{i}" for i in range(len(df))]
    cats = cfg.data.columns.categorical
    df.loc[2, cats[0]] = "two\nlines"  # one quoted value spanning two lines
    df.loc[250, cfg.data.columns.numeric[0]] = "lots"  # lead 251, physical line 253
    src = tmp_path / "multi.csv"
    src.write_text(_csv(df), encoding="utf-8")
    assert sum(len(c) for c in iter_raw_chunks(src, cfg, chunk_rows=40)) == 300
    with pytest.raises(LeadDataError, match=r"'lots' \(line 253\)"):
        validate_file(src, cfg, require_target=False, chunk_rows=40)
    with pytest.raises(LeadDataError, match=r"'lots' \(line 253\)"):
        score_file(cfg, src, tmp_path / "o.csv", chunk_rows=40, bad_rows="stop")
    assert score_file(cfg, src, tmp_path / "o.csv", chunk_rows=40, bad_rows="set_aside")["rejected"] == 1
    assert pd.read_csv(tmp_path / "o.rejected.csv", sep=cfg.data.separator)["line"].tolist() == ["line 253"]
    df.loc[250, cfg.data.columns.numeric[0]] = "1"
    df.loc[260, "id"] = "L3"  # a duplicate in a later chunk: line 263
    src.write_text(_csv(df), encoding="utf-8")
    with pytest.raises(LeadDataError, match=r"duplicate id 'L3' \(line 263\) already seen"):
        score_file(cfg, src, tmp_path / "o.csv", chunk_rows=40, bad_rows="stop")


@pytest.mark.parametrize(
    ("decimal", "thousands", "text", "value"),
    [
        (",", None, "1,5", 1.5),
        (",", None, "1.5", 1.5),  # no thousands separator configured: "." is not dropped (was 15)
        (",", ".", "1.234,5", 1234.5),
        (".", ",", "1,234.5", 1234.5),
        (".", None, "2.25", 2.25),
    ],
)
def test_decimal_mark_and_thousands_separator(tmp_path, export, decimal, thousands, text, value):
    cfg = load_config(write_project(tmp_path, data__decimal=decimal, data__thousands=thousands))
    col = cfg.data.columns.numeric[0]
    df = export.copy()
    df[cfg.data.columns.numeric] = "7"  # the sample's own numbers are written with "."
    df[col] = text
    src = tmp_path / "d.csv"
    src.write_text(_csv(df), encoding="utf-8")
    assert read_leads(src, cfg, require_target=False)[col].tolist() == [value] * len(df)


def test_output_that_would_destroy_an_input_is_refused(project, export, tmp_path, capsys):
    cfg = load_config(project)
    src = tmp_path / "leads.csv"
    src.write_text(_csv(export), encoding="utf-8")
    before = src.read_bytes()
    link = tmp_path / "hard_link.csv"
    link.hardlink_to(src)
    for dest in (src, tmp_path / "." / "leads.csv", link):
        line = _one_line_error(
            *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(dest), "--no-progress")[::2]
        )
        assert "this is the input" in line
    assert src.read_bytes() == before
    raw_folder = cfg.path("raw_data").parent
    with pytest.raises(OutputPathError, match="raw exports"):
        score_file(cfg, src, raw_folder / "scores.csv")
    assert not (raw_folder / "scores.csv").exists()
    line = _one_line_error(
        *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(tmp_path), "--no-progress")[::2]
    )
    assert "is a folder" in line
    line = _one_line_error(
        *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(src / "scores.csv"), "--no-progress")[
            ::2
        ]
    )
    assert "is a file, not a folder" in line


@pytest.mark.parametrize("case", ["comma_separated", "no_id_column", "bad_first_block", "empty", "header_only"])
def test_bad_exports_get_one_line_from_score(project, export, tmp_path, capsys, case):
    src = tmp_path / f"{case}.csv"
    text = {
        "comma_separated": _csv(export, sep=","),
        "no_id_column": _csv(export.drop(columns="id")),
        "bad_first_block": _csv(export).replace("\n", ";extra\n", 3).replace(";extra", "", 1),
        "empty": "",
        "header_only": _csv(export).splitlines()[0] + "\n",
    }[case]
    src.write_text(text, encoding="utf-8")
    line = _one_line_error(
        *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(tmp_path / "o.csv"), "--no-progress")[
            ::2
        ]
    )
    expected = {
        "comma_separated": "only one column found",
        "no_id_column": "missing required column(s) ['id']",
        "bad_first_block": "line 2 has 21 field(s) but the header has 20",
        "empty": "the file is empty",
        "header_only": "no leads",
    }[case]
    assert f"{src.name}: " in line and expected in line
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.slow
def test_dask_engine_uses_the_same_reader(project, export, tmp_path):
    from leadscoring.serving.distributed import score_dask

    cfg = load_config(project)
    a, b = export.iloc[:15], export.iloc[15:]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.csv").write_bytes(b"\xef\xbb\xbf" + _csv(a).encode())
    with gzip.open(tmp_path / "in" / "b.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write(_csv(b))
    res = score_dask(cfg, str(tmp_path / "in" / "*.csv*"), tmp_path / "out", workers=1)
    assert res["leads"] == 30 and (tmp_path / "out" / "_SUCCESS").is_file()
    parts = sorted((tmp_path / "out").glob("part-*.csv"))
    ids = pd.concat([pd.read_csv(p, dtype=str) for p in parts])["id"].tolist()
    assert ids == export["id"].tolist()
    first = sorted(p.read_bytes() for p in parts)
    # a duplicate id across files fails the job; the previous output stays complete
    with gzip.open(tmp_path / "in" / "b.csv.gz", "wt", encoding="utf-8") as fh:
        fh.write(_csv(b.assign(id=np.r_[a["id"].iloc[:1], b["id"].iloc[1:]])))
    with pytest.raises(LeadDataError, match=r"duplicate id '00000000': in a.csv and in b.csv.gz"):
        score_dask(cfg, str(tmp_path / "in" / "*.csv*"), tmp_path / "out", workers=1)
    assert sorted(p.read_bytes() for p in sorted((tmp_path / "out").glob("part-*.csv"))) == first
    # a short row in a later file: its own file name and line
    (tmp_path / "in" / "b.csv.gz").unlink()
    text = _csv(b).splitlines()
    text[4] = text[4].rsplit(";", 1)[0]
    (tmp_path / "in" / "c.csv").write_text("\n".join(text) + "\n", encoding="utf-8")
    with pytest.raises(LeadDataError, match=r"c.csv: line 5 has 19 field\(s\)"):
        score_dask(cfg, str(tmp_path / "in" / "*.csv*"), tmp_path / "out", workers=1)


def test_validate_checks_the_points_table_against_the_configuration(tmp_path, capsys):
    import yaml

    rules = tmp_path / "rules.csv"
    rules.write_text("variable,kind,level,lower,upper,points,rationale\nshoe_size,range,,0,50,10,x\n", encoding="utf-8")
    project = write_project(tmp_path)
    conf = yaml.safe_load(project.read_text(encoding="utf-8"))
    conf["paths"]["rules_table"] = str(rules)
    code, out, _ = _cli(capsys, "--config", str(project), "validate")  # the configured export (paths.raw_data)
    assert code == 0 and out.startswith(f"{load_config(project).path('raw_data')}: ") and "layout OK" in out
    project.write_text(yaml.safe_dump(conf), encoding="utf-8")
    line = _one_line_error(*_cli(capsys, "--config", str(project), "validate", "--input", conf["paths"]["raw_data"])[::2])
    assert "rules.csv" in line and "shoe_size" in line


def test_a_truncated_compressed_export_is_one_line_naming_the_file(project, export, tmp_path, capsys):
    df = pd.concat([export] * 400, ignore_index=True)
    df["id"] = [f"L{i}" for i in range(len(df))]
    data = gzip.compress(_csv(df).encode())
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes(data[: len(data) // 2])  # a copy that broke off half way
    for cmd in (
        ["validate", "--input", str(cut), "--no-target"],
        ["score", "--input", str(cut), "--output", str(tmp_path / "o.csv"), "--no-progress"],
    ):
        line = _one_line_error(*_cli(capsys, "--config", str(project), *cmd)[::2])
        assert "cut.csv.gz: truncated or corrupt compressed file (Truncated compressed stream)" in line, line
        assert "readable only up to line " in line and "::" not in line, line
    assert not (tmp_path / "o.csv").exists()


def test_a_value_longer_than_the_reader_block_names_its_line(project, export, tmp_path, capsys):
    cfg = load_config(project)
    df = export.copy()
    df.loc[3, cfg.data.columns.categorical[0]] = "x" * (12 << 20)  # lead 4 (line 5): 12 MB, three 4 MB blocks
    src = tmp_path / "big.csv"
    src.write_text(_csv(df), encoding="utf-8")
    for cmd in (
        ["validate", "--input", str(src), "--no-target"],
        ["score", "--input", str(src), "--output", str(tmp_path / "o.csv"), "--no-progress"],
    ):
        line = _one_line_error(*_cli(capsys, "--config", str(project), *cmd)[::2])
        assert "big.csv: line 5: a value longer than the reader's block (4 MB)" in line, line[:300]
        assert "straddl" not in line and len(line) < 400
    assert not (tmp_path / "o.csv").exists()


@pytest.mark.parametrize("value", ["0", "-1"])
def test_non_positive_chunk_sizes_are_refused_when_parsing(project, export, tmp_path, capsys, value):
    src = tmp_path / "leads.csv"
    src.write_text(_csv(export), encoding="utf-8")
    out = tmp_path / "o.csv"
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(project), "score", "--input", str(src), "--output", str(out), "--chunk-rows", value, "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"argument --chunk-rows: must be at least 1, got {value}" in err, err
    assert "no leads" not in err and not out.exists()
    with pytest.raises(ValueError, match=f"chunk_rows must be at least 1, got {value}"):
        next(iter_raw_chunks(src, load_config(project), int(value)))


def test_a_full_disk_names_the_output_file(project, export, tmp_path, capsys, monkeypatch):
    from leadscoring.serving import batch

    src = tmp_path / "leads.csv"
    src.write_text(_csv(export), encoding="utf-8")
    out = tmp_path / "scores.csv"

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch, "_write_csv", full_disk)  # the scores' write fails
    line = _one_line_error(
        *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(out), "--no-progress")[::2]
    )
    assert f"error: {out}: not written, the disk is full (No space left on device)" in line and "::" not in line, line
    assert not out.exists() and not list(tmp_path.glob(".scores.csv.*"))


def test_a_failed_write_closes_no_writer_while_another_write_runs(project, export, tmp_path, capsys, monkeypatch):
    """The scores' write fails while the inputs file's write, queued after it, still runs: the
    writers are closed only once it has finished. Closing a parquet writer under a running
    write replaced the full-disk message by the parquet library's "Only 0 out of 4 columns
    are initialized", or crashed the process."""
    import threading
    import time

    import pyarrow.parquet as pq

    from leadscoring.serving import batch

    src = tmp_path / "leads.csv"
    src.write_text(_csv(export), encoding="utf-8")
    out = tmp_path / "scores.csv"
    finished, closed_early = threading.Event(), []
    real = pq.ParquetWriter

    class SlowWriter(real):
        def write_table(self, *args, **kwargs):
            time.sleep(0.5)  # still writing when the scores' write has failed
            super().write_table(*args, **kwargs)
            finished.set()

        def close(self):
            closed_early.append(not finished.is_set())
            super().close()

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "ParquetWriter", SlowWriter)
    monkeypatch.setattr(batch, "_write_csv", full_disk)
    line = _one_line_error(
        *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(out), "--no-progress")[::2]
    )
    assert "not written, the disk is full (No space left on device)" in line, line
    assert closed_early == [False]  # the inputs file's writer, closed after its write finished

    def quota(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EDQUOT, "Disk quota exceeded")  # from elsewhere, naming no file

    monkeypatch.setattr(batch, "score_file", quota)
    line = _one_line_error(
        *_cli(capsys, "--config", str(project), "score", "--input", str(src), "--output", str(out), "--no-progress")[::2]
    )
    assert line == f"leadscoring score: error: {out}: not written, the disk is full (Disk quota exceeded)", line


def test_validate_of_a_wide_export_warns_nothing(tmp_path, export, capsys):
    extra = [f"extra_{i}" for i in range(280)]
    shipped = load_config(write_project(tmp_path)).data.columns.numeric
    config = write_project(tmp_path, data__columns__numeric=[*shipped, *extra])
    wide = pd.concat([export, pd.DataFrame("1", index=export.index, columns=extra)], axis=1)
    src = tmp_path / "wide.csv"
    src.write_text(_csv(wide), encoding="utf-8")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, _ = _cli(capsys, "--config", str(config), "validate", "--input", str(src), "--no-target")
    assert code == 0 and "wide.csv: 30 leads, layout OK" in out
    assert [str(w.message)[:60] for w in caught if issubclass(w.category, pd.errors.PerformanceWarning)] == []


def test_score_takes_a_file_without_the_fields_the_model_does_not_read(sample, tmp_path, capsys, caplog):
    """New leads from a form that never carries the fields kept out of the model (post-contact
    fields, variables not selected) are scored as if those fields were blank; a file without
    a field the model reads is still refused, naming it."""
    import logging

    from .small_models import save_scoring_model

    cfg_path = write_project(tmp_path)
    cfg = load_config(cfg_path)
    cols = cfg.data.columns
    dropped = [cols.categorical[0], cols.numeric[0]]
    X, y = sample.drop(columns=cfg.data.target_column), sample[cfg.data.target_column]
    save_scoring_model(cfg, X, y, cfg.path("models_dir"), n_estimators=20, features=[c for c in cols.all if c not in dropped])
    leads = X.head(200)
    leads.assign(**dict.fromkeys(dropped)).to_csv(tmp_path / "blank.csv", sep=";", index=False)
    leads.drop(columns=dropped).to_csv(tmp_path / "without.csv", sep=";", index=False)

    caplog.set_level(logging.INFO, logger="leadscoring.serving.batch")
    score_file(cfg, tmp_path / "blank.csv", tmp_path / "blank_scores.csv")
    score_file(cfg, tmp_path / "without.csv", tmp_path / "without_scores.csv")
    blank, without = (pd.read_csv(tmp_path / f"{n}_scores.csv", dtype={"id": str}) for n in ("blank", "without"))
    assert without["id"].tolist() == blank["id"].tolist()
    np.testing.assert_allclose(without["probability"], blank["probability"], atol=1e-9)
    absent = ", ".join(c for c in cols.all if c in dropped)  # in the configuration's order
    assert f"without.csv lacks {absent}, which the model does not read" in caplog.text

    read = cols.categorical[1]
    leads.drop(columns=[*dropped, read]).to_csv(tmp_path / "short.csv", sep=";", index=False)
    code, _, err = _cli(
        capsys,
        "--config",
        str(cfg_path),
        "score",
        "--input",
        str(tmp_path / "short.csv"),
        "--output",
        str(tmp_path / "s.csv"),
        "--no-progress",
        "--no-history",
    )
    line = _one_line_error(code, err)
    assert "short.csv" in line and repr(read) in line and repr(dropped[0]) not in line


def test_a_file_in_utf8_for_a_windows_1252_project_is_said_so(tmp_path, sample, capsys):
    """New leads saved in UTF-8 where the export is Windows-1252: the column with a euro
    sign reads garbled, and the one-line error says why instead of only "missing"."""
    import yaml

    cfg_path = write_project(tmp_path, data__encoding="cp1252")
    cfg = load_config(cfg_path)
    column = cfg.data.columns.numeric[0]
    renamed = f"{column} (€)"

    def rename(node):  # the column's name wherever the configuration names it
        if isinstance(node, dict):
            return {rename(k): rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(v) for v in node]
        return renamed if node == column else node

    conf = rename(yaml.safe_load(cfg_path.read_text(encoding="utf-8")))
    cfg_path.write_text(yaml.safe_dump(conf, sort_keys=False, allow_unicode=True), encoding="utf-8")
    leads = sample.drop(columns=cfg.data.target_column).head(20).rename(columns={column: renamed})
    leads.to_csv(tmp_path / "utf8.csv", sep=";", index=False, encoding="utf-8")
    code, _, err = _cli(capsys, "--config", str(cfg_path), "validate", "--input", str(tmp_path / "utf8.csv"), "--no-target")
    line = _one_line_error(code, err)
    assert f"missing required column(s) ['{renamed}']" in line
    assert f"'{column} (â‚¬)' is '{renamed}' written in UTF-8" in line and "data.encoding" in line


@pytest.mark.skipif(os.name == "nt", reason="SIGTERM")
def test_sigterm_during_score_is_one_line_and_leaves_no_temporary_file(project, sample, tmp_path):
    """`timeout` or `systemctl stop` ends `score` as Ctrl-C does: exit 143 with one line, no
    output, and no temporary file beside where it would have been."""
    import signal
    import subprocess
    import sys
    import time

    big = pd.concat([sample.drop(columns="compra")] * 60, ignore_index=True)
    big["id"] = [f"L{i}" for i in range(len(big))]
    big.to_csv(tmp_path / "big.csv", sep=";", index=False)
    out = tmp_path / "out" / "scores.csv"
    out.parent.mkdir()
    argv = [sys.executable, "-m", "leadscoring.cli", "--config", str(project), "score", "--input", str(tmp_path / "big.csv")]
    child = subprocess.Popen(
        [*argv, "--output", str(out), "--no-progress", "--chunk-rows", "2000"], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not list(out.parent.iterdir()) and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)  # until the scores are being written
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 143, err[-2000:]
    assert err.strip().splitlines()[-1] == "leadscoring score: interrupted: terminated by SIGTERM; stopped"
    assert list(out.parent.iterdir()) == []


def test_a_windows_1252_file_for_a_utf_8_project_says_which_setting_reads_it(project, export, tmp_path, capsys):
    cats = load_config(project).data.columns.categorical
    export.loc[3, cats[0]] = "Référence"
    src = tmp_path / "windows.csv"
    src.write_bytes(_csv(export).encode("cp1252"))
    code, _, err = _cli(capsys, "--config", str(project), "validate", "--input", str(src), "--no-target")
    line = _one_line_error(code, err)
    assert "windows.csv: not readable as utf-8" in line and line.endswith("set data.encoding: cp1252")


def test_validate_lists_every_row_score_would_set_aside(project, export, tmp_path, capsys):
    """Not only the first: each bad row's line and problem, in file order, a count and what
    score does with them; exit 1. Repeated ids are found across chunks too."""
    cfg = load_config(project)
    num, yn = cfg.data.columns.numeric[0], cfg.data.columns.yes_no[0]
    df = pd.concat([export] * 3, ignore_index=True)
    df["id"] = [f"L{i}" for i in range(len(df))]
    df[num] = df[num].astype(object)
    df.loc[2, num] = "many"  # line 4
    df.loc[9, yn] = "Perhaps"  # line 11
    df.loc[len(df) - 1, "id"] = "L0"  # the last line repeats the first lead's id
    src = tmp_path / "new.csv"
    src.write_text(_csv(df), encoding="utf-8")
    code, out, err = _cli(capsys, "--config", str(project), "validate", "--input", str(src), "--no-target")
    assert code == 1 and err == "", err
    lines = out.splitlines()
    assert lines[0].startswith(f"{src}: {len(df) - 3} leads OK, 3 row(s) with a problem (3.3%; score ")
    assert f"(scoring.bad_rows: {cfg.scoring.bad_rows})" in lines[0]
    assert lines[1].startswith(f"  line 4: column '{num}'") and "'many'" in lines[1]
    assert lines[2].startswith(f"  line 11: column '{yn}'")
    assert lines[3] == f"  line {len(df) + 1}: column 'id' (id) repeats the id of an earlier line: 'L0'"
    from leadscoring.ingest.schema import BadRows

    across = BadRows()  # chunks of 5 leads: the repeated id is in another chunk than its first
    assert validate_file(src, cfg, require_target=False, chunk_rows=5, bad_rows=across) == len(df) - 3
    assert across.table()["line"].tolist() == ["line 4", "line 11", f"line {len(df) + 1}"]
    assert across.table()["problem"].iloc[-1] == "column 'id' (id) repeats the id of an earlier line: 'L0'"  # as within one

    training = df.assign(**{cfg.data.target_column: 1})  # the training export: the run stops at the first
    training.to_csv(tmp_path / "export.csv", sep=";", index=False)
    code, out, _ = _cli(capsys, "--config", str(project), "validate", "--input", str(tmp_path / "export.csv"))
    assert code == 1 and "the run reads the export whole and stops at its first problem" in out.splitlines()[0]
    with pytest.raises(LeadDataError, match=r"^new.csv: "):
        validate_file(src, cfg, require_target=False)  # without bad_rows: one problem refuses the file, as before


def test_a_limited_record_of_bad_rows_keeps_the_first_in_the_file_and_counts_all():
    from leadscoring.ingest.schema import BadRows

    bad = BadRows(limit=2)
    for record in (40, 7, 99, 3, 58, 12, 5):  # as checks and chunks find them
        bad.add(record, f"line {record + 2}", "problem")
    assert len(bad) == 7 and bad.table()["line"].tolist() == ["line 5", "line 7"] and bad.first() == "line 5: problem"


def test_validate_keeps_a_few_bad_rows_and_counts_the_rest_over_many_chunks(project, export, tmp_path):
    """A record limited to the first rows (validate's) stays aligned with each chunk's leads
    once it has dropped the later ones: a bad row in every chunk, the last one a repeated id."""
    from leadscoring.ingest.schema import BadRows

    cfg = load_config(project)
    num = cfg.data.columns.numeric[0]
    df = pd.concat([export] * 3, ignore_index=True)
    df["id"] = [f"L{i}" for i in range(len(df))]
    df[num] = df[num].astype(object)
    bad = list(range(2, len(df) - 5, 5))  # one text value in each chunk of 5 leads but the last
    df.loc[bad, num] = "many"
    df.loc[len(df) - 1, "id"] = "L0"
    src = tmp_path / "many.csv"
    src.write_text(_csv(df), encoding="utf-8")
    few = BadRows(limit=2)
    assert validate_file(src, cfg, require_target=False, chunk_rows=5, bad_rows=few) == len(df) - len(bad) - 1
    assert len(few) == len(bad) + 1 and few.table()["line"].tolist() == ["line 4", "line 9"]
