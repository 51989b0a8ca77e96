"""The sections of the configuration file, as typed models with their defaults and checks
(assembled into :class:`leadscoring.config.ProjectConfig`)."""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from leadscoring.formats import NumberStyle
from leadscoring.scored_lead import DEFAULT_CRM_FIELDS, SCORE_FIELDS

DEFAULT_CONFIG = Path("01_Documentos") / "config.yaml"
CONFIG_ENV = "LEADSCORING_CONFIG"


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or inconsistent."""


class StrictSection(BaseModel):
    """A section of the configuration: unknown keys are refused and values are read-only."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsConfig(StrictSection):
    raw_data: str
    validation_dir: str = "02_Datos/02_Validacion"
    work_dir: str = "02_Datos/03_Trabajo"
    models_dir: str = "04_Modelos"
    results_dir: str = "05_Resultados"
    notebooks_dir: str = "03_Notebooks"
    docs_dir: str = "01_Documentos"
    rules_table: str = "01_Documentos/scoring_rules.csv"
    # What this project's analyst saw and decided, one section per notebook ("## 08 ...");
    # the production run copies each section into its notebook (leadscoring.config.notes).
    analyst_notes: str = "01_Documentos/analyst_notes.md"
    # The score history: every production scoring's scores (id, score, model version, time,
    # job), one parquet file per scoring job in this folder; the previous score and trend of
    # each lead come from here. A path ending in .parquet (the single file of earlier
    # versions) names the folder of the same stem beside it, where that file is migrated.
    score_history: str = "05_Resultados/score_history"
    # The outcome history: every status change pulled from the CRM (``leadscoring pull``),
    # append-only; the latest state per lead is what ``retrain`` learns from.
    outcome_history: str = "02_Datos/outcome_history.csv"
    # What the CRM connectors remember between runs: the pull watermark and the push state.
    crm_state: str = "02_Datos/crm_state"


#: Path keys read from (and, for the score history, appended at) the project root even
#: during a staged run: inputs and state that outlives a run.
INPUT_PATHS = frozenset(
    {"raw_data", "notebooks_dir", "rules_table", "analyst_notes", "score_history", "outcome_history", "crm_state"}
)


class ColumnRoles(StrictSection):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    yes_no: list[str] = Field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.yes_no]


#: How an export writes its dates (``data.date_format``), besides a strftime format
#: (``"%d.%m.%Y"``); read by :func:`leadscoring.ingest.values.parse_dates`.
DATE_STYLES = ("day_first", "month_first", "unix_seconds", "unix_milliseconds", "excel_serial")


class DataConfig(StrictSection):
    separator: str = ","
    encoding: str = "utf-8"
    decimal: str = "."
    thousands: str | None = None  # thousands separator to remove from numbers (none by default)
    id_column: str
    # The export has no id column: the reader numbers the leads (1 = the first lead of the
    # export) in a column named ``id_column``, so scores and payloads carry that row number.
    id_from_row_number: bool = False
    # The lead's creation date, if the export has one: the validation split is then the most
    # recent leads and cross-validation keeps time order. Never a model input.
    date_column: str | None = None
    # How its dates are written: day_first (31.12.2024), month_first (12/31/2024),
    # unix_seconds, unix_milliseconds, excel_serial, or a strftime format ("%d.%m.%Y");
    # unset: ISO 8601 and other text pandas reads (month first when ambiguous).
    date_format: str | None = None
    target_column: str
    positive_value: str = "1"
    negative_value: str = "0"
    missing_values: list[str] = Field(default_factory=list)
    yes_values: list[str] = Field(default_factory=lambda: ["Yes", "1", "True"])
    no_values: list[str] = Field(default_factory=lambda: ["No", "0", "False"])
    allow_extra_columns: bool = False
    columns: ColumnRoles
    # Allowed [min, max] per numeric column (null: unbounded); values outside are rejected.
    ranges: dict[str, tuple[float | None, float | None]] = Field(default_factory=dict)
    # Codes meaning "missing" in numeric columns (e.g. -1 = never contacted), per column.
    numeric_missing: dict[str, list[float]] = Field(default_factory=dict)
    post_contact: list[str] = Field(default_factory=list)
    use_post_contact_fields: bool = True
    # Plain-language names of columns (and derived features) for reports, e.g. segment names.
    labels: dict[str, str] = Field(default_factory=dict)
    fit_columns: list[str] = Field(default_factory=list)
    engagement_columns: list[str] = Field(default_factory=list)
    allow_leaky: list[str] = Field(default_factory=list)  # kept in models despite the leakage audit

    @model_validator(mode="after")
    def _check_columns(self) -> DataConfig:
        roles = self.columns.all
        if not roles:
            raise ValueError("columns: list at least one numeric, categorical or yes_no column")
        seen: set[str] = set()
        for col in roles:
            if col in seen:
                raise ValueError(f"columns: '{col}' is listed under more than one role")
            seen.add(col)
        for special in (self.id_column, self.target_column, self.date_column):
            if special in seen:
                raise ValueError(f"columns: '{special}' is the id, target or date column; remove it from the roles")
        for key in ("ranges", "numeric_missing"):
            bad = [c for c in getattr(self, key) if c not in self.columns.numeric]
            if bad:
                raise ValueError(f"{key}: {bad} are not numeric columns")
        for key in ("post_contact", "fit_columns", "engagement_columns", "allow_leaky"):
            unknown = [c for c in getattr(self, key) if c not in seen]
            if unknown:
                raise ValueError(f"{key}: {unknown} are not listed under columns")
        if self.thousands is not None and self.thousands in (self.decimal, self.separator, ""):
            raise ValueError(f"thousands: {self.thousands!r} must differ from the decimal mark and the separator")
        if self.date_format is not None and self.date_format not in DATE_STYLES:
            if "%" not in self.date_format:
                raise ValueError(
                    f"date_format: {self.date_format!r} is none of {list(DATE_STYLES)} nor a strftime format ('%d.%m.%Y')"
                )
            try:
                datetime.strptime("", self.date_format)
            except ValueError as exc:  # a valid format only says that "" does not match it
                if "does not match" not in str(exc):
                    raise ValueError(f"date_format: {exc}") from None
        for key in ("separator", "decimal"):
            if len(getattr(self, key)) != 1:
                raise ValueError(
                    f"{key}: {getattr(self, key)!r} must be one character "
                    "(e.g. ',', ';', or a tab written \"\\t\" in double quotes)"
                )
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise ValueError(f"encoding: {self.encoding!r} is not a known text encoding (e.g. utf-8, cp1252, latin-1)") from None
        overlap = set(self.yes_values) & set(self.no_values)
        if overlap:
            raise ValueError(f"yes_values and no_values share {sorted(overlap)}")
        return self

    @property
    def model_columns(self) -> list[str]:
        """Columns the models may use (post-contact ones only when allowed)."""
        drop = set() if self.use_post_contact_fields else set(self.post_contact)
        return [c for c in self.columns.all if c not in drop]


class SplitConfig(StrictSection):
    validation_share: float = Field(0.2, gt=0.0, lt=0.9)
    seed: int = 42
    # Fewest conversions / non-conversions needed before a model is trained (notebook 01).
    min_positives: int = Field(40, ge=1)
    min_negatives: int = Field(40, ge=1)


class CleaningConfig(StrictSection):
    rare_min_share: float = Field(0.01, ge=0.0, lt=0.5)
    clip_quantile: float = Field(0.99, gt=0.5, le=1.0)


class FeaturesConfig(StrictSection):
    products: dict[str, tuple[str, str]] = Field(default_factory=dict)
    ratios: dict[str, tuple[str, str]] = Field(default_factory=dict)
    selection_file: str = "selected_features.json"

    @property
    def sources(self) -> dict[str, tuple[str, str]]:
        """Each derived feature (products, then ratios) and the two columns it is built from."""
        return {**self.products, **self.ratios}

    def built_from(self, columns: Iterable[str]) -> list[str]:
        """The derived features built from any of ``columns``."""
        names = set(columns)
        return [name for name, pair in self.sources.items() if names & set(pair)]


class ModellingConfig(StrictSection):
    seed: int = 42
    # Variable selection (notebook 06): a variable is dropped as useless below this
    # information value when its permutation importance is not positive either.
    min_information_value: float = Field(0.02, ge=0.0)
    cv_folds: int = Field(5, ge=2, le=20)
    search_iterations: int = Field(12, ge=1)
    calibration: Literal["isotonic", "sigmoid", "uncalibrated", "auto"] = "auto"


class LeakageConfig(StrictSection):
    """Thresholds of the leakage audit (notebook 06, ``leadscoring.training.leakage``)."""

    dominant_auc: float = Field(0.90, gt=0.5, le=1.0)  # one variable alone ranking this well: excluded
    dominant_margin: float = Field(0.08, ge=0.0, lt=0.5)  # ... or this far above the second best
    dominant_margin_min_auc: float = Field(0.80, gt=0.5, le=1.0)  # ... and at least this good
    review_auc: float = Field(0.80, gt=0.5, le=1.0)  # alone this good: review
    name_auc: float = Field(0.70, gt=0.5, le=1.0)  # an outcome-like name and this good: excluded
    pure_level_rate: float = Field(0.02, ge=0.0, lt=0.5)  # a level converting at <= this or >= 1 - this
    pure_level_min_share: float = Field(0.10, gt=0.0, le=1.0)  # ... covering this share of leads: excluded
    missing_auc: float = Field(0.75, gt=0.5, le=1.0)  # missingness predicting this well: review
    filled_min_rows: int = Field(30, ge=1)  # a mostly empty column whose filled-in rows (at least this many) ...
    filled_pure_rate: float = Field(0.02, ge=0.0, lt=0.5)  # ... convert at <= this or >= 1 - this: excluded
    group_overlap: float = Field(0.9, gt=0.0, le=1.0)  # flagged columns, one filled in within the other's leads: a group
    # Words before an outcome-like stem that make it an earlier event, known before the contact
    # ("previous outcome", "poutcome", "prior status"): the name is then no sign.
    earlier_qualifiers: list[str] = Field(default_factory=lambda: ["previous", "prev", "prior", "past", "last campaign", "p"])
    # Words that make a name a consent or preference, set before any contact ("do not call",
    # "call opt-out", "no_llamar"): the name is then no sign either.
    consent_words: list[str] = Field(default_factory=lambda: ["no", "do not", "dont", "opt out", "optout", "unsubscribe"])
    # Words that make a name one of the lead's own attributes, known before any contact
    # ("marital status", "employment status", "estado civil"): the name is then no sign.
    attribute_words: list[str] = Field(
        default_factory=lambda: [
            "marital",
            "civil",
            "employment",
            "occupation",
            "job",
            "family",
            "student",
            "relationship",
            "residence",
            "residency",
            "housing",
            "citizenship",
            "immigration",
            "socioeconomic",
            "health",
            "smoking",
            "laboral",
            "familiar",
            "contractor",
            "juridique",
            "legal",
            "juridico",
            "giuridico",
            "rechtsform",
        ]
    )
    # Stems that read like a sales contact only in its context: the whole name (with at most a
    # unit, "duration_s"), or beside a ``contact_words`` word ("call duration", "duracion
    # llamada"); "page duration" or "session duration" is behaviour before any contact.
    context_stems: list[str] = Field(default_factory=lambda: ["duration", "duracion"])
    contact_words: list[str] = Field(
        default_factory=lambda: ["call", "contact", "talk", "phone", "meeting", "demo", "llamada", "contacto", "reunion"]
    )
    name_stems: list[str] = Field(
        default_factory=lambda: [
            "status",
            "estado",
            "tag",
            "etiqueta",
            "stage",
            "etapa",
            "quality",
            "calidad",
            "grade",
            "result",
            "outcome",
            "duration",
            "duracion",
            "call",
            "llamada",
            "disposition",
            "won",
            "lost",
            "closed",
            "converted",
            "cerrado",
            "ganado",
            "perdido",
            "convertido",
            # deal fields and outcomes in French, German, Italian and Portuguese
            "deal",
            "contract",
            "contrat",
            "contrato",
            "contratto",
            "vertrag",
            "signature",
            "statut",
            "gagne",
            "perdu",
            "resultat",
            "etape",
            "verloren",
            "gewonnen",
            "ergebnis",
            "esito",
            "ganho",
        ]
    )


class Bucket(StrictSection):
    name: str
    min_score: int = Field(ge=0, le=100)
    action: str


class ReasonsConfig(StrictSection):
    """Reasons per lead: up to ``positive`` pushing the score up and ``negative`` pulling it down."""

    positive: int = Field(3, ge=0, le=20)
    negative: int = Field(3, ge=0, le=20)
    # A level seen in fewer training leads than this gets no conversion-rate evidence.
    min_leads: int = Field(20, ge=1)


class GradesConfig(StrictSection):
    """Letter grades. By score ranges (``min_scores``, highest first, last 0); or, when set,
    by ``shares`` of leads per grade (best first, summing to 1); or by the sales team's
    capacity: ``calls_per_week`` leads get the first grade, the rest is split between the
    other grades in proportion to ``shares`` (equal parts when unset). Share and capacity
    thresholds are learned from the training leads' scores (out of fold: as new leads score)
    and stored with the model."""

    names: list[str] = Field(default_factory=lambda: ["A", "B", "C", "D"])
    # A from the default top bucket (HOT, 80): the grade and the bucket give a lead one first call list
    min_scores: list[int] = Field(default_factory=lambda: [80, 50, 25, 0])
    shares: list[float] | None = None
    calls_per_week: float | None = Field(None, gt=0)
    # Leads arriving per week; unset: measured from data.date_column on the training leads.
    leads_per_week: float | None = Field(None, gt=0)

    @property
    def method(self) -> Literal["ranges", "shares", "capacity"]:
        return "capacity" if self.calls_per_week else "shares" if self.shares else "ranges"

    @model_validator(mode="after")
    def _check(self) -> GradesConfig:
        n = len(self.names)
        if n < 2 or len(set(self.names)) != n:
            raise ValueError("grades.names: need at least two distinct names")
        mins = self.min_scores
        if len(mins) != n or mins != sorted(mins, reverse=True) or len(set(mins)) != n or mins[-1] != 0:
            raise ValueError(f"grades.min_scores: one per grade ({n}), highest first, distinct, the last 0")
        if self.shares is not None:
            if len(self.shares) != n or any(s <= 0 for s in self.shares) or abs(sum(self.shares) - 1) > 1e-6:
                raise ValueError(f"grades.shares: one positive share per grade ({n}), summing to 1")
        return self


class ScoringConfig(StrictSection):
    buckets: list[Bucket] = Field(
        default_factory=lambda: [
            Bucket(name="HOT", min_score=80, action="Call immediately"),
            Bucket(name="WARM", min_score=50, action="Nurture with sales email"),
            Bucket(name="COLD", min_score=0, action="Automated marketing"),
        ]
    )
    reasons: ReasonsConfig = ReasonsConfig()
    grades: GradesConfig = GradesConfig()
    # Trend against the lead's previous score in the score history: "improving" when the
    # score rose by at least this many points, "declining" when it fell as much, else "steady".
    trend_points: int = Field(5, ge=1, le=100)
    # CRM custom-field name per output field (``leadscoring push``, notebook 10's payloads):
    # any field of a scored lead (:data:`~leadscoring.scored_lead.SCORE_FIELDS`).
    crm_fields: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_CRM_FIELDS))
    # A row of leads to score that fails validation (text in a number column, an unknown
    # yes/no answer, a repeated id): "stop" refuses the whole file with a one-line error and
    # writes nothing; "set_aside" scores the other rows and writes that row, its line and its
    # problem to the rejected-rows file (``score``: OUTPUT.rejected.csv; the nightly cycle: its
    # state folder). A file with more than ``max_bad_share`` of its rows set aside is refused
    # all the same: it is in another layout, not a few typing slips.
    bad_rows: Literal["stop", "set_aside"] = "stop"
    max_bad_share: float = Field(0.05, ge=0.0, le=1.0)

    @model_validator(mode="before")
    @classmethod
    def _old_top_factors(cls, data: object) -> object:
        # Configurations drafted before 0.4 say ``top_factors: N``: N reasons each way.
        if isinstance(data, dict) and "top_factors" in data:
            data = dict(data)
            n = data.pop("top_factors")
            data.setdefault("reasons", {"positive": n, "negative": n})
        return data

    @model_validator(mode="after")
    def _check_buckets(self) -> ScoringConfig:
        unknown = sorted(set(self.crm_fields) - set(SCORE_FIELDS))
        if unknown:
            raise ValueError(f"crm_fields: {unknown} are not score fields; use some of {sorted(DEFAULT_CRM_FIELDS)}")
        mins = [b.min_score for b in self.buckets]
        if not mins or mins != sorted(mins, reverse=True) or len(set(mins)) != len(mins):
            raise ValueError("buckets: list them from the highest min_score down, each min_score distinct")
        if mins[-1] != 0:
            raise ValueError("buckets: the last bucket needs min_score 0 so every lead gets one")
        return self


class SegmentationConfig(StrictSection):
    k_range: tuple[int, int] = (2, 8)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2, 3, 4])
    # Categorical column shown as "which channel brings each segment" (None: the first
    # configured categorical column; no chart when there is none).
    channel_column: str | None = None
    # Segment names: "High-potential" at or above high_ratio × the base conversion rate,
    # "Low-potential" at or below low_ratio ×, "Average" in between.
    high_ratio: float = Field(1.3, gt=1.0)
    low_ratio: float = Field(0.7, gt=0.0, lt=1.0)
    min_stability: float = Field(0.8, ge=0.0, le=1.0)  # adjusted Rand index for a stable k

    @model_validator(mode="after")
    def _check_k(self) -> SegmentationConfig:
        lo, hi = self.k_range
        if not 2 <= lo <= hi:
            raise ValueError("k_range: need 2 <= low <= high")
        return self


class RunConfig(StrictSection):
    kernel_name: str = "leadscoring"
    execution_timeout: int = Field(1800, ge=10)
    start_timeout: int = Field(120, ge=10)
    report_notebooks: list[str] = Field(default_factory=list)


class ReportConfig(StrictSection):
    """The client summary (notebook 09) and the number style of every report's tables."""

    # Named in the client summary's and the run index's titles ("... for <client_name>"); none: no name.
    client_name: str | None = None
    # How numbers are written in tables and reports: 1,234.5 (".", ",") or 1.234,5 (",", ".")
    # or 1 234,5 (",", " "); "" for no thousands separator.
    decimal_mark: Literal[".", ","] = "."
    thousands_separator: Literal[",", ".", " ", "\u202f", "'", ""] = ","

    @model_validator(mode="after")
    def _check_marks(self) -> ReportConfig:
        if self.decimal_mark == self.thousands_separator:
            raise ValueError(f"thousands_separator: {self.thousands_separator!r} must differ from the decimal mark")
        if self.client_name is not None and not self.client_name.strip():
            raise ValueError("client_name: leave it out rather than empty")
        return self

    @property
    def number_style(self) -> NumberStyle:
        """The number style of the formatters (:mod:`leadscoring.formats`)."""
        return NumberStyle(self.decimal_mark, self.thousands_separator)


class MonitoringConfig(StrictSection):
    """The monitoring report (``leadscoring monitor``, the last step of ``cycle``): how past
    scores fared once their outcomes came back, drift, the A/B test, and when to raise an alert."""

    # Leads are grouped by the week (Monday to Sunday, UTC) or month of their first scoring.
    cohort: Literal["week", "month"] = "week"
    # ROC-AUC and Brier score of a cohort only when each class (converted, not converted) has
    # at least this many leads; else "not enough outcomes yet".
    min_per_class: int = Field(30, ge=1)
    # A lead still open this many days after its first scoring counts as not converted;
    # younger, it is open (neither converted nor lost). Null: open leads never count.
    maturity_days: float | None = Field(60, gt=0)
    # Confidence of every interval (expected conversions, lift).
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    # Alerts: a cohort's ROC-AUC this far below the model's validation ROC-AUC; a population
    # stability index above psi_alert (in a cohort of at least min_leads leads); the lift
    # not significant once the A/B test has this many outcomes.
    auc_drop: float = Field(0.05, gt=0.0, lt=0.5)
    psi_alert: float = Field(0.25, gt=0.0)
    min_leads: int = Field(100, ge=1)
    lift_min_outcomes: int = Field(1000, ge=1)


class ServiceConfig(StrictSection):
    """Limits of the HTTP service (``leadscoring serve``)."""

    max_batch: int = Field(10_000, ge=1)  # leads per /score/batch request; more is refused with 413
    max_body_mb: float = Field(16, gt=0)  # request body size; larger is refused with 413
    # Seconds for a client to send a request's headers (from connecting, or from the previous
    # answer on a kept-alive connection); slower: the connection is closed.
    header_timeout: float = Field(10, gt=0)
    # Seconds for a client to send a whole request body; slower: HTTP 408, connection closed.
    body_timeout: float = Field(30, gt=0)
    # Seconds between checks for a newly promoted model set (hot reload: a promotion by
    # `leadscoring run`, `retrain` or `rollback` is loaded, verified and swapped in); 0 = off.
    reload_seconds: float = Field(5, ge=0)
    # What the service scores goes to the score history (each lead with its inputs, for
    # retraining), appended in the background every this many seconds as one part; a lead's
    # previous score and trend then count the service's scorings too. 0: not recorded.
    history_flush_seconds: float = Field(10, ge=0)


class ExperimentConfig(StrictSection):
    """The A/B test (off by default): a share of the newly scored leads is held out as a
    control group, worked by sales the usual way, so the monitoring report can measure the
    scoring's real lift. Each lead's group comes from a hash of its id and ``salt``
    (:mod:`leadscoring.serving.experiment`), so it is the same on every path and every run."""

    # Share of leads in the control group (0: no experiment, no experiment_group anywhere).
    control_share: float = Field(0.0, ge=0.0, lt=1.0)
    # Any text, kept for the experiment's life: the same salt gives every lead the same group.
    salt: str = ""
    # Groups recorded in the score history before this time belong to an earlier experiment
    # (another salt or share) and are not compared with today's (see check_groups).
    started_at: datetime | None = None
    # What a control lead's CRM record gets: "none" (nothing is pushed for it) or "marker"
    # (only ``control_field`` = ``control_value``, no score field).
    control_crm: Literal["none", "marker"] = "none"
    control_field: str = "scoring_group"
    control_value: str | int | bool = "control"

    @property
    def enabled(self) -> bool:
        """Whether newly scored leads get an experiment group."""
        return self.control_share > 0

    @field_validator("started_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # a time without zone is UTC, as every time of the project
        return value

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if self.enabled and not self.salt.strip():
            raise ValueError("salt: set a salt (any text, kept for the experiment's life) when control_share is above 0")
        if not self.control_field.strip():
            raise ValueError("control_field: the CRM field of the control marker cannot be empty")
        return self


#: The environment variable holding the alerts' webhook URL (it usually carries a secret).
ALERTS_WEBHOOK_ENV = "LEADSCORING_ALERTS_WEBHOOK"


class AlertsConfig(StrictSection):
    """Alerts to a webhook (``leadscoring.serving.alerts``): a JSON POST with a Slack-compatible
    ``text`` field when a lead enters one of ``levels`` and once per monitoring alert. Off
    without a URL."""

    # The webhook's URL; the variable named in ``webhook_env``, when set, takes its place
    # (a Slack webhook URL is a secret: keep it in the environment).
    webhook_url: str | None = None
    webhook_env: str = ALERTS_WEBHOOK_ENV
    # Buckets whose entry is alerted (a lead whose previous score was in another bucket, or
    # none); default: the top bucket.
    levels: list[str] | None = None
    # Send the monitoring report's alerts (``leadscoring monitor``, ``cycle``).
    monitoring: bool = True
    timeout: float = Field(10.0, gt=0)  # seconds per POST
    retries: int = Field(5, ge=0)  # tries after the first (5xx, 429, no answer), with backoff
    backoff: float = Field(1.0, ge=0)  # first wait in seconds, doubled each retry ...
    max_backoff: float = Field(30.0, ge=0)  # ... up to this
    queue_size: int = Field(1000, ge=1)  # alerts waiting at most; beyond, dropped with a warning
    # More leads than this entering a level in one scoring job (or service call): one summary
    # message instead of one per lead.
    max_messages: int = Field(20, ge=1)
    # A command (score, monitor) waits at most this long at its end for queued alerts to go.
    drain_seconds: float = Field(30.0, ge=0)

    @staticmethod
    def is_web_url(value: str) -> bool:
        """Whether ``value`` is an http(s) URL naming a host (a webhook, from the file or the
        environment)."""
        parts = urlsplit(value.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname)

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not cls.is_web_url(value):
            raise ValueError("webhook_url: must start with http:// or https:// and name a host")
        return value.strip()


class LoopConfig(StrictSection):
    """The closed loop (``leadscoring cycle``, ``retrain``): when a retraining is due, when a
    lead's outcome counts, and when a challenger replaces the champion."""

    # A retraining is due when at least this many converted AND this many lost leads matured
    # since the last training (or retraining attempt) ...
    min_new_converted: int = Field(40, ge=1)
    min_new_lost: int = Field(40, ge=1)
    # ... or when the model is older than this many days; a champion this old is also replaced
    # by its challenger whatever their figures.
    max_age_days: float = Field(90, gt=0)
    # When an outcome counts: converted or lost at once; still open, after
    # ``monitoring.maturity_days`` (one setting for retraining and monitoring alike).
    # The promotion rule: the challenger replaces the champion when its ROC-AUC is at least the
    # champion's minus this and its Brier score at most the champion's plus this, both
    # measured on the newest matured leads (of each outcome, the newest ``holdout_share`` of
    # those matured since the champion was trained), which neither model learned from.
    tolerance: float = 0.005
    holdout_share: float = Field(0.5, gt=0.0, lt=1.0)
    # Which scoring of a lead trains the model once its outcome is known (converted or lost):
    # the inputs recorded with it in the score history, never the CRM's fields of today.
    # "last_before_outcome": the last scoring at or before the outcome (outcome_at, else the
    # change's modified_at); "first": the first scoring (also at or before the outcome: a
    # scoring after it may already show the outcome).
    train_on_inputs: Literal["first", "last_before_outcome"] = "last_before_outcome"


#: What a lead's CRM status means for the model.
OUTCOMES = ("converted", "lost", "open")


class RestListConfig(StrictSection):
    """The list endpoint a ``rest`` CRM pull pages through (or, with ``poll_known_ids``, the
    endpoint reading one lead, for CRMs that cannot filter by modification time)."""

    # URL template of one page, e.g. "/api/leads?modified_since={since}&limit={page_size}";
    # placeholders: {since}, {until} (ISO 8601 UTC), {page_size}, {cursor}, {offset}, {id}.
    url: str = ""
    method: Literal["GET", "POST"] = "GET"
    # JSON body template of a POST page (placeholders as in ``url``, inside strings).
    body: dict[str, object] | None = None
    # How pages follow each other:
    # - "body_cursor": the answer's ``cursor_path`` is put in the next request as {cursor};
    # - "next_url": the answer's ``next_url_path`` is the next page's URL;
    # - "query_cursor": like body_cursor, the cursor going into the URL's query;
    # - "offset": {offset} grows by the page length (read as keyset on (modified, id));
    # - "none": one page.
    paging: Literal["body_cursor", "next_url", "query_cursor", "offset", "none"] = "none"
    cursor_path: str = ""
    next_url_path: str = ""
    # JSON path (dots, e.g. "data.items") of the list of leads in the answer ("" = the answer is the list).
    items_path: str = ""
    # Poll every lead known to the score history by id (``url`` then reads one lead, {id}).
    poll_known_ids: bool = False


class RestConfig(StrictSection):
    """A home-grown CRM, configured rather than coded (``crm.kind: rest``)."""

    # Push: method, URL template ({id}) and JSON body template; the string "{fields}" in the
    # body stands for the score fields (CRM name -> value), "{id}" for the lead's id.
    push_method: Literal["PATCH", "PUT", "POST"] = "PATCH"
    push_url: str = "/leads/{id}"
    push_body: dict[str, object] = Field(default_factory=lambda: {"lead_id": "{id}", "custom_fields": "{fields}"})
    # Pull: the list endpoint and JSON paths (dots) within one lead's record.
    pull: RestListConfig = RestListConfig()
    id_path: str = "id"
    modified_path: str = "updated_at"
    outcome_time_path: str = ""
    deleted_path: str = ""
    # The record fields the status map reads: name in the status map -> JSON path.
    status_paths: dict[str, str] = Field(default_factory=lambda: {"status": "status"})
    # Read one lead (``crm check`` reads a pushed field back): URL template with {id}, and the
    # JSON path of the fields object in its answer.
    read_url: str = "/leads/{id}"
    read_fields_path: str = "custom_fields"


class CrmConfig(StrictSection):
    """The client's CRM (``leadscoring push``, ``pull`` and ``crm check``)."""

    kind: Literal["hubspot", "salesforce", "dynamics", "pipedrive", "odoo", "rest"] = "rest"
    url: str  # base URL, e.g. "https://api.hubapi.com" or "https://org.crm.dynamics.com"
    # Credentials come from the environment only: the variable holding the token, and how it
    # is sent ("bearer": Authorization: Bearer <token>; "header": the header named in
    # ``auth_header`` carries the token as is; "basic": the token is "user:password").
    token_env: str = "LEADSCORING_CRM_TOKEN"
    auth: Literal["bearer", "header", "basic", "none"] = "bearer"
    auth_header: str = "Authorization"
    # Status map: outcome -> rules; a rule is {field: value or [values]} and matches when all
    # its fields match. Empty: the connector's usual map (e.g. HubSpot's lifecycle stage).
    status_map: dict[Literal["converted", "lost", "open"], list[dict[str, object]]] = Field(default_factory=dict)
    # A status no rule maps: "fail" (stop the pull naming CRM, lead, field and value), "warn"
    # (counted as open and reported), "open" (counted as open quietly).
    unmapped: Literal["fail", "warn", "open"] = "warn"
    # A pull starts this many seconds before the previous pull's watermark (late writes).
    overlap_seconds: int = Field(300, ge=0)
    page_size: int = Field(100, ge=1, le=10_000)
    timeout: float = Field(30.0, gt=0)
    # Kind-specific settings (e.g. Salesforce's API version, Pipedrive's entity), checked by the connector.
    options: dict[str, object] = Field(default_factory=dict)
    rest: RestConfig = RestConfig()
