"""The tracking workbook, ``01_Documentos/tracking.xlsx``: what the pipeline learned and what
ran in production, for people who read Excel rather than a terminal.

- *Transformations*: per variable, its role, the cleaning and encoding the scoring model in
  service learned (clipping bounds, medians, levels), the selection (notebook 06's
  ``variable_selection.csv`` / ``selected_features.json``) and the leakage audit's verdict
  (``leakage_audit.csv``).
- *Runs*: every line of the run log (``01_Documentos/run_log.jsonl``): production runs (trial and
  failed ones marked), retrainings, rollbacks and nightly cycles (one row per cycle), with time,
  data fingerprint, rows, figures and decision.
- *Models*: the model set in service and every archived set under ``04_Modelos/versions/``, with
  the scoring model's figures and where it is kept.
- *About*: when and after what the workbook was written, and its sources.

The workbook is rebuilt from those sources and replaced atomically (:func:`update_tracking`) by
every production run (promoted or not: a trial run only adds its marked row, the other sheets
always describe what is in service), every retraining, rollback and cycle; it is never edited in
place, so nothing typed into it survives the next rewrite.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from openpyxl import Workbook
from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from leadscoring.artifacts import (
    MODEL_CARD,
    RULE_MODEL,
    RUN_LOG,
    SCORE_MODEL,
    SEGMENT_MODEL,
    SET_FILE,
    ModelIntegrityError,
    list_model_sets,
    load_model,
    read_manifest,
)
from leadscoring.config import ProjectConfig
from leadscoring.errors import one_line
from leadscoring.formats import NumberStyle, is_missing, number
from leadscoring.io import append_json_line, atomic_path

log = logging.getLogger(__name__)

#: The workbook, in ``paths.docs_dir``.
TRACKING_WORKBOOK = "tracking.xlsx"
#: Notebook 06's products read by the *Transformations* sheet (in ``paths.results_dir``); the
#: selected features' file is ``features.selection_file``.
SELECTION_TABLE = "variable_selection.csv"
LEAKAGE_AUDIT = "leakage_audit.csv"

#: Excel number formats.
DATE = "yyyy-mm-dd hh:mm"
COUNT = "#,##0"
SECONDS = "#,##0.0"
AUC = "0.000"
BRIER = "0.0000"
SHARE = "0.0%"
#: Widths (characters) of a column: fitted to its content between these; text columns that
#: wrap get :data:`WRAP_WIDTH`.
MIN_WIDTH, MAX_WIDTH, WRAP_WIDTH = 8, 40, 60
#: Characters of a SHA-256 or a fingerprint shown (as in the version folders' names).
SHORT_HASH = 12
#: Levels of a categorical variable named in its encoding before "…".
SHOWN_LEVELS = 8

HEADER_FILL = "DDEBF7"
TRIAL_FILL = "EDEDED"
FAILED_FILL = "FCE4E4"
IN_SERVICE_FILL = "E2EFDA"


@dataclass(frozen=True)
class Column:
    """One column of a sheet: the row key it shows, its header, its Excel number format and
    whether its text wraps (long reasons and decisions)."""

    key: str
    header: str
    number_format: str | None = None
    wrap: bool = False


# -- sources -------------------------------------------------------------------------------


def tracking_path(cfg: ProjectConfig) -> Path:
    """Where the workbook lives: ``paths.docs_dir/tracking.xlsx``."""
    return cfg.path("docs_dir") / TRACKING_WORKBOOK


def run_log_path(cfg: ProjectConfig) -> Path:
    """The run log every production run, retraining, rollback and cycle appends to."""
    return cfg.path("docs_dir") / RUN_LOG


def read_run_log(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run log's lines, oldest first; a line that is not a JSON object (a write cut short,
    bytes that are not UTF-8) is skipped and said in the log."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = []
    for n, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            line = None
        if not isinstance(line, dict):
            log.warning("%s: line %d is not a JSON object, left out of the tracking workbook", path.name, n)
            continue
        lines.append(line)
    return lines


def _manifest(path: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(path)
    except (ModelIntegrityError, OSError):
        return None


def _read_table(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except (OSError, ValueError):
        return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


# -- values as a person reads them -----------------------------------------------------------


def _short(sha: Any) -> str | None:
    return str(sha)[:SHORT_HASH] if sha else None


def _yes_no(v: Any) -> str | None:
    return None if v is None else ("Yes" if v else "No")


def _float(v: Any) -> float | None:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) or math.isinf(x) else x


def _int(v: Any) -> int | None:
    x = _float(v)
    return None if x is None else int(round(x))


def _time(v: Any) -> datetime | None:
    """A time from the log or a manifest (ISO 8601, or a run id ``20250301T090000Z``) as a naive
    UTC datetime (Excel has no time zones: the headers say UTC)."""
    if not v:
        return None
    text = str(v)
    for parse in (datetime.fromisoformat, lambda t: datetime.strptime(t, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)):
        try:
            t = parse(text)
        except ValueError:
            continue
        return (t.astimezone(UTC) if t.tzinfo else t).replace(tzinfo=None)
    return None


def _relative(cfg: ProjectConfig, path: Any) -> str | None:
    """A path in the project as written from the project folder (``04_Modelos/versions/…``)."""
    if not path:
        return None
    p = Path(str(path))
    try:
        return p.resolve().relative_to(cfg.root.resolve()).as_posix()
    except ValueError:
        return str(p)


# -- the Runs sheet --------------------------------------------------------------------------

RUN_COLUMNS = (
    Column("time", "Time (UTC)", DATE),
    Column("kind", "Kind"),
    Column("id", "Run / cycle id"),
    Column("status", "Status"),
    Column("promoted", "Changed what is in service"),
    Column("seconds", "Duration (s)", SECONDS),
    Column("fingerprint", "Training data fingerprint"),
    Column("training_rows", "Training rows", COUNT),
    Column("scored", "Leads scored", COUNT),
    Column("roc_auc", "ROC-AUC", AUC),
    Column("brier", "Brier score", BRIER),
    Column("gain", "Converters in top 30 %", SHARE),
    Column("measured_on", "Figures measured on", wrap=True),
    Column("model", "Scoring model (SHA-256)"),
    Column("decision", "Decision", wrap=True),
    Column("details", "Details", wrap=True),
    Column("archived", "Replaced set archived in"),
)

#: Run log lines of retrainings and rollbacks carry ``"event"`` (production runs ``"run_id"``,
#: the cycle's steps ``"cycle"`` and ``"step"``).
RETRAIN_EVENT, ROLLBACK_EVENT = "retrain", "rollback"


def _model_index(cfg: ProjectConfig) -> dict[str, dict[str, Any]]:
    """Every scoring model manifest the project keeps (in service and archived), by SHA-256."""
    models = cfg.path("models_dir")
    index: dict[str, dict[str, Any]] = {}
    for folder in [*list_model_sets(models), models]:
        info = _manifest(folder / SCORE_MODEL)
        if info and info.get("sha256"):
            index[str(info["sha256"])] = info
    return index


def _run_row(cfg: ProjectConfig, line: Mapping[str, Any], models: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """A production run's row: figures from its log line, training data from its model's manifest."""
    status = str(line.get("status", ""))
    promoted = bool(line.get("promoted"))
    metrics = line.get("metrics") or {}
    sha = metrics.get("model_sha256")
    info = models.get(str(sha)) if sha else None
    if info is None:  # a trial run's model: in its own products folder, while that is kept
        staged = cfg.root / cfg.paths.results_dir / "runs" / str(line.get("run_id")) / "products" / cfg.paths.models_dir
        info = _manifest(staged / SCORE_MODEL)
        if info is not None and sha and info.get("sha256") != sha:
            info = None
    trial = bool(line.get("trial")) or (status == "ok" and not promoted)
    only = line.get("only")
    kind = "Trial run (not promoted)" if trial else ("Partial run" if only else "Production run")
    notebooks = line.get("notebooks") or {}
    failed = [f"{name}: {nb.get('error') or nb.get('status')}" for name, nb in notebooks.items() if nb.get("status") != "ok"]
    if status != "ok":
        decision = f"not promoted: the run {status}; what is in service is unchanged"
    elif trial:
        decision = "not promoted (trial run): its products stay in its run folder; what is in service is unchanged"
    elif line.get("archived"):
        decision = "promoted; the model set it replaced is archived"
    else:
        decision = "promoted into the project"
    ran = ", ".join(name.split("_", 1)[0] for name in notebooks)
    details = "; ".join(failed) if failed else (f"notebooks {ran}" if ran else None)
    validation = (info or {}).get("validation") or {}
    return {
        "time": _time(line.get("run_id")) or _time(line.get("at")),  # when it started, the run id's stamp
        "kind": kind,
        "id": line.get("run_id"),
        "status": status,
        "promoted": _yes_no(promoted),
        "seconds": _float(line.get("seconds")),
        "fingerprint": _short((info or {}).get("data_fingerprint")),
        "training_rows": _int((info or {}).get("training_rows")),
        "scored": _int(line.get("history_rows")),
        "roc_auc": _float(metrics.get("validation_roc_auc")),
        "brier": _float(metrics.get("validation_brier")),
        "gain": _float(metrics.get("validation_gain_at_30pct")),
        "measured_on": (
            f"validation split ({number(validation.get('n'), cfg.report.number_style)} leads)"
            if validation.get("n")
            else ("validation split" if metrics.get("validation_roc_auc") is not None else None)
        ),
        "model": _short(sha),
        "decision": decision,
        "details": details,
        "archived": _relative(cfg, line.get("archived")),
    }


def _retrain_row(cfg: ProjectConfig, line: Mapping[str, Any]) -> dict[str, Any]:
    style = cfg.report.number_style
    champion = line.get("champion") or {}
    challenger = line.get("challenger") or {}
    holdout = line.get("holdout_leads")
    return {
        "time": _time(line.get("at")),
        "kind": "Retrain",
        "status": line.get("status", "ok"),
        "promoted": _yes_no(line.get("promoted")),
        "seconds": _float(line.get("seconds")),
        "fingerprint": _short(line.get("data_fingerprint")),
        "training_rows": _int(line.get("training_rows")),
        "roc_auc": _float(challenger.get("roc_auc")),
        "brier": _float(challenger.get("brier")),
        "measured_on": f"the challenger, on {number(holdout, style)} held-out new leads" if holdout else "the challenger",
        "model": _short(line.get("model_sha256")),
        "decision": line.get("decision"),
        "details": (
            f"{number(line.get('new_outcomes'), style)} new outcomes; champion on the same leads: ROC-AUC "
            f"{number(_float(champion.get('roc_auc')), style)}, Brier {number(_float(champion.get('brier')), style)}; "
            f"tolerance {number(_float(line.get('tolerance')), style)}"
        ),
        "archived": _relative(cfg, line.get("archived")),
    }


def _rollback_row(cfg: ProjectConfig, line: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "time": _time(line.get("at")),
        "kind": "Rollback",
        "status": line.get("status", "ok"),
        "promoted": "Yes",
        "model": _short(line.get("model_sha256")),
        "decision": f"restored the archived set {line.get('version')}",
        "details": line.get("details"),
        "archived": _relative(cfg, line.get("archived")),
    }


def _cycle_row(cfg: ProjectConfig, cycle: str, steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A nightly cycle's row, from its steps' lines (``leadscoring.loop.cycle``)."""
    by_step = {str(s.get("step")): s for s in steps}
    final = by_step.get("cycle", {})
    retrain = by_step.get("retrain", {})
    figures = retrain.get("figures") or {}
    challenger = figures.get("challenger") or {}
    rescore = (by_step.get("rescore") or {}).get("figures") or {}
    worked = [s for s in steps if s.get("step") != "cycle"]
    problems = [f"{s.get('step')}: {s.get('summary')}" for s in worked if s.get("status") in ("failed", "interrupted")]
    ran = ", ".join(f"{s.get('step')} {s.get('status')}" for s in worked)
    times = [t for t in (_time(s.get("at")) for s in steps) if t is not None]
    return {
        "time": _time(str(cycle).split("-", 1)[0]) or (min(times) if times else None),  # the id: its start, a suffix
        "kind": "Cycle",
        "id": cycle,
        "status": final.get("status", "incomplete"),
        "promoted": _yes_no(bool(figures.get("promoted"))),
        "seconds": _float(final.get("seconds")),
        "scored": _int(rescore.get("rescored")),
        "roc_auc": _float(challenger.get("roc_auc")),
        "brier": _float(challenger.get("brier")),
        "measured_on": "the challenger, on held-out new leads" if challenger else None,
        "decision": (f"retrain: {retrain.get('summary')}" if retrain.get("summary") else ("no retraining" if retrain else None)),
        "details": "; ".join([ran, *problems]) or None,
        "archived": _relative(cfg, figures.get("archived")),
    }


def runs_rows(cfg: ProjectConfig, lines: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The *Runs* sheet's rows, in the run log's order: one per production run, retraining and
    rollback, one per cycle (its steps together, where its first step is)."""
    models = _model_index(cfg)
    rows: list[dict[str, Any]] = []
    cycles: dict[str, list[Mapping[str, Any]]] = {}
    at: dict[str, int] = {}
    for line in lines:
        if "cycle" in line and "step" in line:
            key = str(line["cycle"])
            if key not in cycles:
                cycles[key] = []
                at[key] = len(rows)
                rows.append({})
            cycles[key].append(line)
        elif "run_id" in line:
            rows.append(_shaped(lambda line=line: _run_row(cfg, line, models), [line]))
        elif line.get("event") == RETRAIN_EVENT:
            rows.append(_shaped(lambda line=line: _retrain_row(cfg, line), [line]))
        elif line.get("event") == ROLLBACK_EVENT:
            rows.append(_shaped(lambda line=line: _rollback_row(cfg, line), [line]))
        else:
            rows.append(_as_is(line))
    for key, steps in cycles.items():
        rows[at[key]] = _shaped(lambda key=key, steps=steps: _cycle_row(cfg, key, steps), steps)
    return rows


def _as_is(line: Mapping[str, Any], kind: str | None = None) -> dict[str, Any]:
    """A row showing a run log line as it is (an event of no known kind)."""
    at = line.get("at")
    return {
        "time": _time(at) if isinstance(at, str) else None,
        "kind": kind or str(line.get("event", "other")),
        "details": json.dumps(line, default=str, ensure_ascii=False),
    }


def _shaped(build: Callable[[], dict[str, Any]], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``build()``, the row of ``lines``; a line of an unexpected shape (a field of another type,
    edited by hand or written by another tool) is shown as is, said in the log, so one odd line
    never keeps the workbook from being rewritten."""
    try:
        return build()
    except (AttributeError, TypeError, ValueError, KeyError) as exc:
        log.warning("%s: a line of an unexpected shape (%s), shown as is in the tracking workbook", RUN_LOG, one_line(exc))
        return _as_is({**lines[0], "lines": list(lines)} if len(lines) > 1 else lines[0], kind="unreadable")


# -- the Models sheet ------------------------------------------------------------------------

MODEL_COLUMNS = (
    Column("version", "Version"),
    Column("in_service", "In service"),
    Column("created", "Created (UTC)", DATE),
    Column("archived_at", "Archived (UTC)", DATE),
    Column("model", "Scoring model"),
    Column("how", "Made by"),
    Column("sha", "SHA-256"),
    Column("retrained_from", "Retrained from"),
    Column("fingerprint", "Training data fingerprint"),
    Column("training_rows", "Training rows", COUNT),
    Column("roc_auc", "ROC-AUC", AUC),
    Column("brier", "Brier score", BRIER),
    Column("gain", "Converters in top 30 %", SHARE),
    Column("measured_on", "Figures measured on", wrap=True),
    Column("cv_roc_auc", "CV ROC-AUC", AUC),
    Column("holds", "Holds"),
    Column("folder", "Kept in"),
)

_SET_NAMES = {SCORE_MODEL: "scoring", SEGMENT_MODEL: "segments", RULE_MODEL: "rules", MODEL_CARD: "model card"}


def _model_row(cfg: ProjectConfig, folder: Path, version: str, in_service: bool) -> dict[str, Any]:
    info = _manifest(folder / SCORE_MODEL) or {}
    held = [name for file, name in _SET_NAMES.items() if (folder / file).is_file()]
    if in_service and (cfg.path("docs_dir") / MODEL_CARD).is_file():
        held.append("model card")
    validation, metrics, cv = info.get("validation") or {}, info.get("metrics") or {}, info.get("cv") or {}
    figures = validation or metrics
    style = cfg.report.number_style
    if validation:
        measured = f"validation split ({number(validation.get('n'), style)} leads)" if validation.get("n") else "validation split"
    else:
        measured = metrics.get("measured_on")
    archived = (_read_json(folder / SET_FILE) or {}).get("archived_at") if not in_service else None
    return {
        "version": version,
        "in_service": _yes_no(in_service),
        "created": _time(info.get("created_at")),
        "archived_at": _time(archived),
        "model": info.get("model_name") or info.get("kind"),
        "how": ("retrain (challenger promoted)" if info.get("retrained_from") else "production run") if info else None,
        "sha": _short(info.get("sha256")),
        "retrained_from": _short(info.get("retrained_from")),
        "fingerprint": _short(info.get("data_fingerprint")),
        "training_rows": _int(info.get("training_rows")),
        "roc_auc": _float(figures.get("roc_auc")),
        "brier": _float(figures.get("brier")),
        "gain": _float(figures.get("gain_at_30pct")),
        "measured_on": measured,
        "cv_roc_auc": _float(cv.get("roc_auc")),
        "holds": ", ".join(held) or None,
        "folder": _relative(cfg, folder),
    }


def models_rows(cfg: ProjectConfig) -> list[dict[str, Any]]:
    """The *Models* sheet's rows: every archived set, oldest model first, then the set in
    service (an archived copy of the set in service says so)."""
    models = cfg.path("models_dir")
    current = _manifest(models / SCORE_MODEL)
    current_sha = (current or {}).get("sha256")
    rows = []
    for folder in list_model_sets(models):
        sha = (_manifest(folder / SCORE_MODEL) or {}).get("sha256")
        row = _model_row(cfg, folder, folder.name, in_service=False)
        if current_sha and sha == current_sha:
            row["in_service"] = "Yes (this copy is archived)"
        rows.append(row)
    if any((models / name).is_file() for name in (SCORE_MODEL, SEGMENT_MODEL, RULE_MODEL)):
        rows.append(_model_row(cfg, models, "in service", in_service=True))
    return rows


# -- the Transformations sheet ---------------------------------------------------------------

TRANSFORMATION_COLUMNS = (
    Column("variable", "Variable"),
    Column("label", "Label"),
    Column("role", "Role"),
    Column("post_contact", "Known only after the sales contact"),
    Column("cleaning", "Cleaning (learned in training)", wrap=True),
    Column("encoding", "Encoding (learned in training)", wrap=True),
    Column("information_value", "Information value", AUC),
    Column("selection", "Selection"),
    Column("selection_reason", "Selection reason", wrap=True),
    Column("leakage", "Leakage audit"),
    Column("single_auc", "ROC-AUC alone", AUC),
    Column("leakage_reason", "Leakage audit reason", wrap=True),
    Column("in_model", "In the scoring model"),
)


def fitted_steps(model: Any) -> dict[str, Any]:
    """The named steps of a fitted scoring pipeline (``clean``, ``features``, ``select``,
    ``encode``, ``model``); empty for anything else."""
    steps = getattr(model, "named_steps", None)
    return dict(steps) if steps is not None else {}


def _levels(values: Sequence[str]) -> str:
    shown = " · ".join(values[:SHOWN_LEVELS])  # levels may hold commas
    return shown + (f", … ({len(values)} in all)" if len(values) > SHOWN_LEVELS else "")


def _cleaning(cfg: ProjectConfig, var: str, role: str, cleaner: Any, style: NumberStyle) -> str:
    """What the cleaning step does to ``var``, with what it learned when the model is at hand."""
    d = cfg.model_data
    parts: list[str] = []
    if role == "numeric":
        codes = d.numeric_missing.get(var)
        if codes:
            parts.append(f"codes {', '.join(number(c, style) for c in codes)} mean missing")
        lo, hi = d.ranges.get(var, (None, None))
        if lo is not None and hi is not None:
            parts.append(f"values outside [{number(lo, style)}, {number(hi, style)}] are refused")
        elif lo is not None or hi is not None:
            parts.append(
                f"values below {number(lo, style)} are refused"
                if lo is not None
                else f"values above {number(hi, style)} are refused"
            )
        q = cfg.cleaning.clip_quantile
        clip = (getattr(cleaner, "clip_", None) or {}).get(var)
        pct = f"percentiles {number(100 * (1 - q), style)} and {number(100 * q, style)} of training"
        if clip is not None:
            parts.append(f"clipped to [{number(clip[0], style)}, {number(clip[1], style)}] ({pct})")
        elif q < 1:
            parts.append(f"clipped to the {pct}")
    elif role == "categorical":
        levels = (getattr(cleaner, "canonical_", None) or {}).get(var)
        placeholders = ", ".join(d.missing_values)
        parts.append("blanks" + (f" and {placeholders}" if placeholders else "") + " mean missing")
        parts.append(
            "spellings differing only in case or spaces folded into the most frequent"
            + (f" ({len(levels)} levels seen)" if levels is not None else "")
        )
    elif role == "yes/no":
        parts.append(f"1 for {' / '.join(d.yes_values)}; 0 for {' / '.join(d.no_values)}; blanks mean missing")
    if var in (getattr(cleaner, "constant_", None) or []):
        parts.append("constant in training: dropped")
    return "; ".join(parts)


def _encoding(var: str, role: str, encoder: Any, style: NumberStyle, rare: float) -> str | None:
    """How the encoder turns ``var`` into model inputs (what it learned), or None when it does not see it."""
    if encoder is None:
        return {
            "numeric": "missing → the training median; standardised",
            "categorical": f"one-hot; levels under {number(100 * rare, style)} % of leads → Other, missing → Missing",
            "yes/no": "1 / 0, missing → 0",
        }.get(role)
    if var in getattr(encoder, "num_", []):
        text = f"missing → {number(encoder.median_[var], style)} (the training median)"
        if var in encoder.indicate_:
            text += ", with a 0/1 'missing' indicator"
        if getattr(encoder, "scale", False):
            text += f"; standardised (mean {number(encoder.mean_[var], style)}, sd {number(encoder.sd_[var], style)})"
        return text
    if var in getattr(encoder, "cat_", []):
        levels = list(encoder.categories_[var])
        return (
            f"one-hot over {len(levels)} levels: {_levels(levels)}; levels under "
            f"{number(100 * encoder.rare_min_share, style)} % of leads and unseen ones → Other, missing → Missing"
        )
    if var in getattr(encoder, "yn_", []):
        return "1 / 0, missing → 0"
    return None


def _scoring_pipeline(cfg: ProjectConfig) -> tuple[dict[str, Any], str]:
    """The fitted steps of the scoring model in service, and a note on where the cleaning and
    encoding columns come from."""
    path = cfg.path("models_dir") / SCORE_MODEL
    if not path.is_file():
        return {}, f"no scoring model in {_relative(cfg, path.parent)} yet: cleaning and encoding as configured"
    try:
        model, _ = load_model(path)
    except ModelIntegrityError as exc:
        return {}, f"the scoring model could not be read ({exc}): cleaning and encoding as configured"
    steps = fitted_steps(model)
    if "clean" not in steps:
        return {}, f"{SCORE_MODEL} is not a scoring pipeline: cleaning and encoding as configured"
    return steps, f"learned by {_relative(cfg, path)}"


def _by_variable(table: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    if table is None or "variable" not in table.columns:
        return {}
    return {str(r["variable"]): r for r in table.to_dict("records")}


def transformations_rows(cfg: ProjectConfig) -> tuple[list[dict[str, Any]], list[str]]:
    """The *Transformations* sheet's rows (the lead id, date and outcome, every configured input,
    every derived feature) and notes on the sources."""
    d, style = cfg.model_data, cfg.report.number_style
    results, models = cfg.path("results_dir"), cfg.path("models_dir")
    steps, note = _scoring_pipeline(cfg)
    cleaner, encoder = steps.get("clean"), steps.get("encode")
    selection = _by_variable(_read_table(results / SELECTION_TABLE))
    audit = _by_variable(_read_table(results / LEAKAGE_AUDIT))
    chosen = _read_json(results / cfg.features.selection_file) or {}
    selected, dropped = set(chosen.get("selected") or []), dict(chosen.get("dropped") or {})
    features = set((_manifest(models / SCORE_MODEL) or {}).get("features") or [])
    notes = [
        f"Cleaning and encoding: {note}.",
        f"Selection: {SELECTION_TABLE} and {cfg.features.selection_file} in {cfg.paths.results_dir} (notebook 06)"
        + ("" if selection or chosen else ": not produced yet")
        + ".",
        f"Leakage audit: {LEAKAGE_AUDIT} in {cfg.paths.results_dir} (notebook 06)" + ("" if audit else ": not produced yet") + ".",
    ]
    rows: list[dict[str, Any]] = []
    special = [
        (d.id_column, "lead id (not a model input)"),
        (d.date_column, "creation date (orders the validation split; not a model input)"),
        (d.target_column, f"outcome the model predicts ({d.positive_value} = converted)"),
    ]
    for var, role in special:
        if var:
            rows.append({"variable": var, "label": d.labels.get(var), "role": role, "in_model": "No"})
    events = set(cfg.event_columns)
    allowed = set(d.model_columns)
    inputs = [(c, "numeric") for c in d.columns.numeric]
    inputs += [(c, "categorical") for c in d.columns.categorical] + [(c, "yes/no") for c in d.columns.yes_no]
    derived = {name: f"derived: {a} × {b}" for name, (a, b) in cfg.features.products.items()}
    derived |= {name: f"derived: {a} / {b} (0 when {b} is 0 or missing)" for name, (a, b) in cfg.features.ratios.items()}
    for var, role in [*inputs, *((name, "derived") for name in derived)]:
        sel, aud = selection.get(var, {}), audit.get(var, {})
        if role == "derived":
            shown_role, cleaning = derived[var], "built from the cleaned inputs"
        else:
            shown_role = f"{role} input" + (" (behavioural, from events)" if var in events else "")
            cleaning = (
                _cleaning(cfg, var, role, cleaner, style)
                if var in allowed
                else "not used: known only after the sales contact (data.use_post_contact_fields: false)"
            )
        if "keep" in sel:
            kept = str(sel["keep"]).strip().lower() in ("true", "1", "yes")
            verdict, reason = ("kept" if kept else "dropped"), sel.get("reason")
        elif var in selected or var in dropped:
            verdict, reason = ("kept" if var in selected else "dropped"), dropped.get(var)
        else:
            verdict, reason = None, None
        encoding = _encoding(var, "numeric" if role == "derived" else role, encoder, style, cfg.cleaning.rare_min_share)
        if encoder is not None and encoding is None:
            if var in (getattr(cleaner, "constant_", None) or []):
                encoding = "not encoded: constant in training"
            elif role != "derived" and var not in allowed:
                encoding = "not encoded: known only after the sales contact"
            else:
                encoding = "not encoded: not selected"
        rows.append(
            {
                "variable": var,
                "label": d.labels.get(var),
                "role": shown_role,
                "post_contact": _yes_no(var in d.post_contact) if role != "derived" else None,
                "cleaning": cleaning,
                "encoding": encoding,
                "information_value": _float(sel.get("information_value")),
                "selection": verdict,
                "selection_reason": None if is_missing(reason) else str(reason),
                "leakage": aud.get("verdict") if not is_missing(aud.get("verdict")) else None,
                "single_auc": _float(aud.get("single_variable_auc")),
                "leakage_reason": None if is_missing(aud.get("reason")) else str(aud.get("reason")),
                "in_model": _yes_no(var in features) if features else None,
            }
        )
    return rows, notes


# -- the workbook ----------------------------------------------------------------------------


def _width(values: Iterable[Any], header: str, number_format: str | None) -> float:
    longest = max(len(w) for w in header.split()) + 2
    for v in values:
        if v is None:
            continue
        if isinstance(v, datetime):
            n = 16
        elif isinstance(v, float) and number_format:
            n = len(f"{v:,.4f}")
        else:
            n = len(str(v))
        longest = max(longest, n + 2)
    return float(min(max(longest, MIN_WIDTH), MAX_WIDTH))


def _add_sheet(
    wb: Workbook,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    fill: Callable[[Mapping[str, Any]], str | None] = lambda row: None,
) -> Worksheet:
    """One sheet: a bold header row (frozen with the first column, filters on), one row per
    entry, number formats per column, widths fitted to the content, long texts wrapped."""
    ws = wb.create_sheet(title)
    ws.append([c.header for c in columns])
    for row in rows:
        ws.append([None if is_missing(row.get(c.key)) else row.get(c.key) for c in columns])
    header_fill = PatternFill("solid", fgColor=HEADER_FILL)
    for cell in ws[1]:
        cell.font = Font(bold=True)
        cell.fill = header_fill
        cell.alignment = Alignment(wrap_text=True, vertical="center")
        cell.border = Border(bottom=Side(style="thin"))
    ws.row_dimensions[1].height = 32
    for j, col in enumerate(columns, start=1):
        letter = get_column_letter(j)
        width = WRAP_WIDTH if col.wrap else _width((r.get(col.key) for r in rows), col.header, col.number_format)
        ws.column_dimensions[letter].width = width
        for cell in ws.iter_rows(min_row=2, min_col=j, max_col=j):
            c = cell[0]
            if col.number_format:
                c.number_format = col.number_format
            c.alignment = Alignment(wrap_text=col.wrap, vertical="top")
    for i, row in enumerate(rows, start=2):
        colour = fill(row)
        if colour:
            for cell in ws[i]:
                cell.fill = PatternFill("solid", fgColor=colour)
    ws.freeze_panes = "B2"
    ws.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{max(len(rows) + 1, 2)}"
    return ws


def _run_fill(row: Mapping[str, Any]) -> str | None:
    if row.get("status") not in (None, "ok"):
        return FAILED_FILL
    return TRIAL_FILL if str(row.get("kind", "")).startswith("Trial") else None


def _about(wb: Workbook, cfg: ProjectConfig, lines: Sequence[Mapping[str, Any]], notes: Sequence[str]) -> None:
    ws = wb.create_sheet("About")
    last = lines[-1] if lines else {}
    if "run_id" in last:
        after = f"production run {last['run_id']} ({last.get('status')})"
    elif "cycle" in last:
        after = f"cycle {last['cycle']} ({last.get('step')} {last.get('status')})"
    elif last:
        after = f"{last.get('event', 'an event')} at {last.get('at')}"
    else:
        after = "no run logged yet"
    entries = [
        ("Written (UTC)", datetime.now(UTC).replace(tzinfo=None, microsecond=0)),
        ("Written after", after),
        ("Rewritten by", "every production run, retrain, rollback and cycle; edits made here are lost at the next rewrite"),
        (
            "Transformations",
            "every variable: role, cleaning, encoding, selection and leakage audit of the scoring model in service",
        ),
        ("Runs", f"every line of {_relative(cfg, run_log_path(cfg))}; trial runs grey, failed ones red"),
        ("Models", f"the set in service (green) and every set archived in {cfg.paths.models_dir}/versions"),
        *(("Source", n) for n in notes),
    ]
    for key, value in entries:
        ws.append([key, value])
    for row in ws.iter_rows():
        row[0].font = Font(bold=True)
        row[1].alignment = Alignment(wrap_text=True, vertical="top", horizontal="left")
    ws["B1"].number_format = DATE
    ws.column_dimensions["A"].width = 18
    ws.column_dimensions["B"].width = 110


def build_workbook(cfg: ProjectConfig) -> Workbook:
    """The tracking workbook from the project's current state: the run log, notebook 06's
    products, the model in service and the archived sets. It opens on *Runs*."""
    lines = read_run_log(run_log_path(cfg))
    transformations, notes = transformations_rows(cfg)
    wb = Workbook()
    wb.remove(wb.active)
    _add_sheet(wb, "Transformations", TRANSFORMATION_COLUMNS, transformations)
    runs = _add_sheet(wb, "Runs", RUN_COLUMNS, runs_rows(cfg, lines), _run_fill)
    _add_sheet(
        wb,
        "Models",
        MODEL_COLUMNS,
        models_rows(cfg),
        lambda r: IN_SERVICE_FILL if str(r.get("in_service")).startswith("Yes") else None,
    )
    _about(wb, cfg, lines, notes)
    wb.active = wb.worksheets.index(runs)
    for ws in wb.worksheets:  # one selected tab, else Excel opens the sheets grouped
        ws.sheet_view.tabSelected = ws is runs
    return wb


def write_tracking(cfg: ProjectConfig) -> Path:
    """Rebuild the workbook and replace ``01_Documentos/tracking.xlsx`` atomically: a failing
    build or write leaves the previous workbook as it was."""
    dest = tracking_path(cfg)
    wb = build_workbook(cfg)
    with atomic_path(dest) as tmp:
        wb.save(tmp)
    log.info("tracking workbook written: %s", dest)
    return dest


def record_event(cfg: ProjectConfig, event: Mapping[str, Any]) -> None:
    """Append ``event`` (one run log line) to the run log, stamped with the time, without
    rewriting the workbook: for a caller that rewrites it once at its end (the cycle)."""
    append_json_line({"at": datetime.now(UTC).isoformat(timespec="seconds"), **event}, run_log_path(cfg))


def update_tracking(cfg: ProjectConfig, event: Mapping[str, Any] | None = None, *, strict: bool = False) -> Path | None:
    """Record ``event`` (one run log line, e.g. a retraining's or a rollback's; None when the
    caller logged already: a production run, a cycle) in the run log, then rewrite the tracking
    workbook from the project's state (:func:`write_tracking`).

    The workbook is a report: a failure to rewrite it (the file open in Excel on Windows, a
    product that cannot be read) is a warning naming it, and the previous workbook stays; the
    next run rewrites it. ``strict`` raises instead. Returns the workbook, or None when it was
    not rewritten. Appending ``event`` to the run log is never silenced."""
    if event is not None:
        record_event(cfg, event)
    try:
        return write_tracking(cfg)
    except Exception as exc:  # a report must not fail the run, retraining or cycle that wrote it
        if strict:
            raise
        log.warning(
            "%s: not rewritten (%s); the previous workbook is kept, the next run rewrites it", tracking_path(cfg), one_line(exc)
        )
        return None
