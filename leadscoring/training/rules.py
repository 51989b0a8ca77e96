"""Rule-based (points) lead scoring: the classic marketing method, as an estimator.

Marketing defines the lead, lists explicit (who the lead is) and implicit (what the lead
did) variables and gives points to each level or range. The points table is a CSV that
marketing can edit (``01_Documentos/scoring_rules.csv``)::

    variable,kind,level,lower,upper,points,rationale
    job_title,level,Manager,,,30,converts 9 times in 10
    minutes_on_site,range,,15,inf,25,long visits

``kind`` is ``level`` (a categorical or yes/no value; ``Missing`` matches empty) or
``range`` (``lower <= x < upper``; a row with level ``Missing`` matches empty numbers).
A lead's points are summed and rescaled to 0-100 between the lowest and highest total
the table allows. :func:`propose_rules` derives points from the data (weights of
evidence), as a starting point for marketing.

"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from leadscoring.artifacts import RULE_MODEL, manifest_path, read_manifest
from leadscoring.config import DataConfig, ProjectConfig
from leadscoring.features.columns import as_frame
from leadscoring.features.encoding import MISSING_LEVEL
from leadscoring.training.woe import RULE_COLUMNS, level_text, propose_rules


class RulesError(ValueError):
    """The points table is malformed (message names the row)."""


def load_rules(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and check a points table."""
    path = Path(path)
    if not path.is_file():
        raise RulesError(f"points table not found: {path}")
    try:
        rules = pd.read_csv(path, dtype={"variable": str, "kind": str, "level": str, "rationale": str}, encoding="utf-8")
    except (UnicodeDecodeError, pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RulesError(f"{path.name}: cannot read as a comma-separated UTF-8 table ({why})") from None
    if not isinstance(rules.index, pd.RangeIndex):  # pandas takes extra leading fields as an index
        raise RulesError(f"{path.name}: cannot read as a comma-separated UTF-8 table (rows have more fields than the header)")
    return check_rules(rules, origin=path.name)


def _number(where: str, field: str, value: object, infinite: bool = False) -> float:
    """``value`` of ``field`` as a number (finite, unless ``infinite``: an open range's
    ``-inf``/``inf``), else a :class:`RulesError` naming both."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        x = float("nan")
    if np.isnan(x) or (np.isinf(x) and not infinite):
        raise RulesError(f"{where}, field {field}: must be a number, got {value!r}")
    return x


def check_rules(rules: pd.DataFrame, origin: str = "rules") -> pd.DataFrame:
    missing = [c for c in ("variable", "kind", "points") if c not in rules.columns]
    if missing:
        raise RulesError(f"{origin}: missing column(s) {missing}; expected {RULE_COLUMNS}")
    rules = rules.reindex(columns=RULE_COLUMNS).copy()
    for i, row in rules.iterrows():
        where = f"{origin} row {int(i) + 2}"
        if row["kind"] not in ("level", "range"):
            raise RulesError(f"{where}: kind must be 'level' or 'range', got {row['kind']!r}")
        _number(where, "points", row["points"])
        if row["kind"] == "level" and pd.isna(row["level"]):
            raise RulesError(f"{where}: a 'level' rule needs a level")
        if row["kind"] == "range" and row["level"] != MISSING_LEVEL:
            lo, hi = _number(where, "lower", row["lower"], True), _number(where, "upper", row["upper"], True)
            if not lo < hi:
                raise RulesError(f"{where}: needs lower < upper, got {lo} and {hi}")
    rules["lower"] = pd.to_numeric(rules["lower"], errors="coerce")
    rules["upper"] = pd.to_numeric(rules["upper"], errors="coerce")
    rules["points"] = rules["points"].astype(float)
    return rules.reset_index(drop=True)


#: Yes/no spellings every points table may use: the default ``data.yes_values``/``no_values``.
ENGLISH_YES_NO = frozenset(
    v.casefold() for key in ("yes_values", "no_values") for v in DataConfig.model_fields[key].get_default(call_default_factory=True)
)


def check_rules_against_config(rules: pd.DataFrame, cfg: ProjectConfig, origin: str = "rules") -> pd.DataFrame:
    """Check a points table against the configuration: every variable a configured column,
    ``range`` rules on numeric columns only, ``level`` rules on categorical or yes/no ones
    (yes/no levels ``Yes``/``No``/``Missing``, or the export's own spellings, ``data.yes_values``
    and ``no_values`` in any case, read as ``Yes``/``No``). Raises :class:`RulesError` naming the row."""
    rules = check_rules(rules, origin=origin)
    roles = cfg.model_data.columns
    spelled = {
        **{v.casefold(): "Yes" for v in [*cfg.data.yes_values, "Yes"]},
        **{v.casefold(): "No" for v in [*cfg.data.no_values, "No"]},
    }
    yes_no_rows = rules["variable"].isin(roles.yes_no) & rules["level"].notna()
    rules.loc[yes_no_rows, "level"] = [spelled.get(str(v).strip().casefold(), v) for v in rules.loc[yes_no_rows, "level"]]
    for i, row in rules.iterrows():
        where = f"{origin} row {int(i) + 2}"
        var, kind = row["variable"], row["kind"]
        if var not in roles.all:
            raise RulesError(f"{where}: variable '{var}' is not a configured column (data.columns)")
        if var in roles.numeric and kind == "level" and row["level"] != MISSING_LEVEL:
            raise RulesError(f"{where}: '{var}' is numeric; use kind 'range' with lower and upper")
        if var not in roles.numeric and kind == "range" and row["level"] != MISSING_LEVEL:
            raise RulesError(f"{where}: '{var}' is not numeric; use kind 'level'")
        if var in roles.yes_no and str(row["level"]) not in ("Yes", "No", MISSING_LEVEL):
            own = [v for v in (*cfg.data.yes_values, *cfg.data.no_values) if v.casefold() not in ENGLISH_YES_NO]
            also = f" (or as the export writes them: {', '.join(own)})" if own else ""
            raise RulesError(
                f"{where}, field level: '{var}' is a yes/no column; level must be Yes, No or {MISSING_LEVEL}{also}, "
                f"got {row['level']!r}"
            )
    return rules


def rules_for_client(
    path: str | os.PathLike[str],
    cfg: ProjectConfig,
    proposed: pd.DataFrame,
    available: Sequence[str] | None = None,
    blocked: Sequence[str] = (),
) -> tuple[pd.DataFrame, str | None]:
    """The configured points table, or ``proposed`` (the data-driven table) with the reason
    when the table is missing, malformed, does not fit this export's configuration, uses a
    variable the leakage audit keeps out of every score (``blocked``) or a column not in
    ``available`` (e.g. one the cleaner dropped as constant)."""
    path = Path(path)
    if not path.is_file():
        return check_rules(proposed, origin="proposed rules"), f"no points table at {path}"
    try:
        rules = check_rules_against_config(load_rules(path), cfg, origin=path.name)
    except RulesError as err:
        return check_rules(proposed, origin="proposed rules"), str(err)
    leaky = rules[rules["variable"].isin(set(blocked))]
    if len(leaky):
        row = leaky.index[0]
        return check_rules(proposed, origin="proposed rules"), (
            f"{path.name}, row {row + 2}, field variable: '{leaky.loc[row, 'variable']}' is kept out of every score by the "
            "leakage audit (filled in after the sales contact)"
        )
    if available is not None:
        absent = sorted(set(rules["variable"]) - set(available))
        if absent:
            return check_rules(proposed, origin="proposed rules"), f"{path.name}: uses {absent}, absent from the data"
    return rules, None


#: What the rule model is called in tables and reports: the client's own points table, or the
#: starting table proposed from the data when none could be used (the rule scorer's manifest
#: records which: ``points_table``).
RULES_NAMES = {"client": "marketing rules", "proposed": "rules proposed from the data"}


def rules_name(manifest: dict[str, object] | None) -> str:
    """The rule model's name for a rule scorer's manifest (a manifest of an older run, without
    ``points_table``: "marketing rules")."""
    return RULES_NAMES.get(str((manifest or {}).get("points_table", "client")), RULES_NAMES["client"])


def rules_name_in(models_dir: Path) -> str:
    """:func:`rules_name` of the rule scorer saved in ``models_dir`` (none saved: "marketing
    rules")."""
    path = models_dir / RULE_MODEL
    return rules_name(read_manifest(path) if manifest_path(path).is_file() else None)


class RuleScorer(ClassifierMixin, BaseEstimator):
    """Sum points per lead and rescale to 0-100 (``decision_function``).

    The 0-100 rule score ranks leads; it is not a probability, so there is no
    ``predict_proba``: compare rules with models on ranking (ROC-AUC, gains), not on Brier.

    Input is the cleaned frame (``LeadCleaner`` output), so use it inside a pipeline
    after the cleaner. With ``rules=None`` the points are proposed from the training data
    in ``fit`` (:func:`propose_rules`), which lets cross-validation judge the method.
    """

    def __init__(
        self,
        rules: pd.DataFrame | None = None,
        yes_no: Sequence[str] = (),
        variables: Sequence[str] | None = None,
        bins: int = 4,
        scale: float = 10.0,
    ) -> None:
        self.rules = rules
        self.yes_no = yes_no
        self.variables = variables
        self.bins = bins
        self.scale = scale

    def fit(self, X: pd.DataFrame, y: Sequence[int] | None = None) -> RuleScorer:
        X = as_frame(X)
        if self.rules is None:
            if y is None:
                raise ValueError("RuleScorer without rules needs y to propose points")
            # ``variables`` the cleaner dropped in this fit (constant in these leads) are simply absent
            cols = list(X.columns) if self.variables is None else [c for c in self.variables if c in X.columns]
            self.rules_ = propose_rules(X[cols], pd.Series(np.asarray(y)), yes_no=self.yes_no, bins=self.bins, scale=self.scale)
        else:
            self.rules_ = check_rules(pd.DataFrame(self.rules))
        lows, highs = 0.0, 0.0
        for _, grp in self.rules_.groupby("variable"):
            lows += min(0.0, grp["points"].min())
            highs += max(0.0, grp["points"].max())
        self.min_total_, self.max_total_ = lows, highs
        self.classes_ = np.array([0, 1])
        return self

    def points(self, X: pd.DataFrame) -> pd.Series:
        """Total points per lead (unmatched values score 0)."""
        check_is_fitted(self, "rules_")
        X = as_frame(X)
        total = np.zeros(len(X))
        yes_no = set(self.yes_no)
        for var, grp in self.rules_.groupby("variable", sort=False):
            if var not in X.columns:
                raise KeyError(f"RuleScorer: the points table uses '{var}', which the input lacks")
            s = X[var]
            text = level_text(s, var in yes_no)
            matched = np.zeros(len(X), dtype=bool)
            for _, r in grp.iterrows():
                if r["kind"] == "level" or r["level"] == MISSING_LEVEL:
                    hit = np.array(text == str(r["level"]), dtype=bool)
                else:
                    v = pd.to_numeric(s, errors="coerce")
                    hit = np.array((v >= r["lower"]) & (v < r["upper"]), dtype=bool)
                hit &= ~matched  # first matching rule of a variable wins
                total += np.where(hit, r["points"], 0.0)
                matched |= hit
        return pd.Series(total, index=X.index, name="points")

    def rule_score(self, X: pd.DataFrame) -> pd.Series:
        """0-100 rule score."""
        span = self.max_total_ - self.min_total_
        pts = self.points(X)
        return ((pts - self.min_total_) / span * 100.0) if span > 0 else pts * 0.0

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """The 0-100 rule score (what ROC-AUC and average precision rank by)."""
        return self.rule_score(X).to_numpy()

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 for leads at or above the middle of the rule scale (score ≥ 50)."""
        return (self.decision_function(X) >= 50.0).astype(int)
