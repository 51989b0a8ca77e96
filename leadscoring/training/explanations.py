"""Why a lead got its score: per-lead contributions, the evidence behind each variable,
and the reasons a sales person reads, with the fit and engagement scores.

**Contributions.** For XGBoost the contributions are its native SHAP values
(``pred_contribs``); for linear models they are coefficient × (encoded value − its training
mean), the linear model's SHAP values. Both measure a lead from the average training lead, in
log-odds of the *uncalibrated* model: calibration is monotone, so the ranking of reasons is
unchanged. Encoded columns are summed back to the raw variable they come from
(:func:`contribution_matrix`).

**Evidence.** At training time (notebook 07) :func:`build_reason_book` records, from the
working split, the evidence behind each variable: the conversion rate per level of a
categorical or yes/no variable, and for a numeric one where a value stands among the
training leads and how its range converted; and which variables are *fit* (who the lead
is) or *engagement* (what the lead did): :func:`fit_engagement_groups`. The book is plain
data (JSON) stored in the model's manifest, so the scorer needs nothing but the verified
model and its manifest.

**Reasons.** Per lead, :meth:`ReasonBook.reasons` lists up to N variables pushing the score
up and N pulling it down, each as ``{variable, label, value, effect, evidence}``; for
example ``Occupation: Working Professional — 92 % of such leads converted (all leads:
38 %)``. :meth:`ReasonBook.group_scores` turns the contributions of the fit and engagement
variables into two 0-100 scores: the share of training leads whose variables of that group
added less to the odds.
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from xgboost import DMatrix, XGBClassifier

from leadscoring.config import ProjectConfig
from leadscoring.features.columns import as_frame
from leadscoring.features.encoding import encoded_feature_sources
from leadscoring.formats import NumberStyle
from leadscoring.training.pipeline import booster_matrix, final_estimator, transform_steps

# --- Contributions: log-odds per raw variable -------------------------------------------


def _step_index(model: object, name: str) -> int:
    return [n for n, _ in model.steps].index(name)  # type: ignore[attr-defined]


def prepare(model: object, X: object, skip: int = 0) -> tuple[object, np.ndarray]:
    """Run the preparation steps once: (prepared columns, encoded matrix). ``skip``: ``X``
    has already been through the first ``skip`` steps."""
    enc_idx = _step_index(model, "encode")
    prepared = transform_steps(model, X, start=skip, stop=enc_idx)  # type: ignore[arg-type]
    return prepared, model.steps[enc_idx][1].transform(prepared)  # type: ignore[attr-defined]


#: Per fitted encoder (weakly held: gone with the model), its encoded-columns-per-variable
#: matrix; filled under a lock, as the service scores from several threads.
_GROUPS: weakref.WeakKeyDictionary[object, tuple[np.ndarray, list[str]]] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()


def shown_values(model: object, X: object, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The values a reason shows: ``values`` (the prepared ones, which the evidence reads),
    with each clipped numeric column's value as the lead has it (``X``: the raw input), so a
    lead with 165 minutes on site does not read as the clipping bound."""
    cleaner = model.steps[_step_index(model, "clean")][1]  # type: ignore[attr-defined]
    clipped = [v for v in values if v in getattr(cleaner, "clip_", {})]
    return {**values, **cleaner.unclipped(X, clipped)} if clipped else values


def _encoded_columns_per_variable(encoder: object) -> tuple[np.ndarray, list[str]]:
    """(encoded columns × variables) 0/1 matrix summing encoded columns per raw variable,
    and the variable names; computed once per fitted encoder."""
    with _GROUPS_LOCK:
        cached = _GROUPS.get(encoder)
        if cached is None:
            sources, _ = encoded_feature_sources(encoder)  # type: ignore[arg-type]
            variables = list(dict.fromkeys(sources))
            groups = np.zeros((len(sources), len(variables)))
            groups[np.arange(len(sources)), [variables.index(v) for v in sources]] = 1.0
            cached = _GROUPS[encoder] = (groups, variables)
        return cached


def contribution_matrix(
    model: object, prepared: object, encoded: np.ndarray, dmatrix: DMatrix | None = None
) -> tuple[np.ndarray, list[str]]:
    """(leads × variables) contributions in log-odds, and the variable names
    (``dmatrix``: the booster's input for ``encoded``, if already built). Each is measured
    from the average training lead: XGBoost's SHAP values, or a logistic regression's
    coefficient times the input's distance from its training mean (a lead at the usual level
    of a variable gets no reason from it)."""
    encoder = model.steps[_step_index(model, "encode")][1]  # type: ignore[attr-defined]
    groups, variables = _encoded_columns_per_variable(encoder)
    est = final_estimator(model)
    if isinstance(est, XGBClassifier):
        dm = dmatrix if dmatrix is not None else booster_matrix(est, encoded)
        raw = est.get_booster().predict(dm, pred_contribs=True, validate_features=False)[:, :-1]
    elif isinstance(est, LogisticRegression):  # linear SHAP: measured from the average training lead
        raw = (encoded - getattr(encoder, "output_mean_", 0.0)) * est.coef_[0]
    else:
        raise TypeError(f"per-lead reasons are not available for {type(est).__name__}")
    return raw @ groups, variables


def contributions(
    model: object, X: object, prepared: object = None, encoded: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-lead contributions per source variable, and the prepared (clean) values.

    Returns ``(contrib, prepared)``: ``contrib`` has one column per variable the model
    uses (log-odds), ``prepared`` the cleaned values of those variables, for display.
    ``prepared``/``encoded`` from :func:`prepare` avoid running the preparation twice.
    """
    if prepared is None or encoded is None:
        prepared, encoded = prepare(model, X)
    vals, variables = contribution_matrix(model, prepared, encoded)
    shown = [v for v in variables if v in prepared.columns]
    return pd.DataFrame(vals, columns=variables), as_frame(prepared[shown])


def global_importance(model: object, X: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute contribution per variable, and the mean signed one."""
    contrib, _ = contributions(model, X)
    return (
        pd.DataFrame({"mean_abs_contribution": contrib.abs().mean(), "mean_contribution": contrib.mean()})
        .sort_values("mean_abs_contribution", ascending=False)
        .rename_axis("variable")
        .reset_index()
    )


# --- Evidence: what the training leads say about each variable ---------------------------

#: Quantile grid (per mille) of numeric variables and group contributions.
GRID = np.linspace(0.0, 1.0, 1001)


def fit_engagement_groups(cfg: ProjectConfig, variables: Sequence[str]) -> dict[str, list[str]]:
    """Model variables per group: a column listed in ``data.fit_columns`` or
    ``data.engagement_columns``; a derived feature goes with its sources (engagement first)."""
    fit, eng = set(cfg.model_data.fit_columns), set(cfg.model_data.engagement_columns)
    sources = {name: set(pair) for name, pair in cfg.features.sources.items()}
    groups: dict[str, list[str]] = {"fit": [], "engagement": []}
    for v in variables:
        src = sources.get(v, {v})
        if src & eng:
            groups["engagement"].append(v)
        elif src & fit:
            groups["fit"].append(v)
    return groups


def numeric_profile(values: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    known = ~np.isnan(values)
    v, t = values[known], y[known]
    q = np.quantile(v, GRID) if len(v) else np.zeros(len(GRID))
    edges = np.unique(np.quantile(v, np.linspace(0, 1, 11))) if len(v) else np.array([0.0])
    bins = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, max(len(edges) - 2, 0))
    n_bins = max(len(edges) - 1, 1)
    leads = np.bincount(bins, minlength=n_bins).astype(float)
    conv = np.bincount(bins, weights=t, minlength=n_bins)
    rates = np.divide(conv, leads, out=np.zeros_like(conv), where=leads > 0)
    return {"quantiles": q.tolist(), "edges": edges.tolist(), "rates": rates.tolist(), "leads": leads.tolist()}


def level_profile(levels: pd.Series, y: np.ndarray) -> dict[str, list[float]]:
    stats = pd.DataFrame({"level": levels.to_numpy(), "y": y}).groupby("level", sort=False)["y"].agg(["mean", "size"])
    return {str(k): [float(r["mean"]), float(r["size"])] for k, r in stats.iterrows()}


# --- Reasons and fit/engagement scores ---------------------------------------------------

MISSING = "missing"
#: Up to this many leads, reasons are built lead by lead (cheaper than the array set-up).
SMALL = 8
GROUPS = ("fit", "engagement")


def _pct(x: float) -> str:
    return f"{x:.0%}".replace("%", " %")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _word(spellings: Sequence[str], default: str) -> str:
    """The first spelling that is a word (``Ja``, not ``1``), in lower case, else ``default``."""
    return next((s.strip().lower() for s in spellings if any(ch.isalpha() for ch in s) and len(s.strip()) > 1), default)


def format_value(v: Any, yes_no: bool = False) -> str:
    """A value as a sales person reads it: ``1,230``, ``4.5``, ``yes``, ``missing``."""
    if _missing(v):
        return MISSING
    if yes_no:
        return "yes" if float(v) >= 0.5 else "no"
    if isinstance(v, (float, np.floating, int, np.integer)):
        v = float(v)
        return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.3g}"
    return str(v)


@dataclass
class ReasonBook:
    """Evidence per variable and the fit/engagement grouping, learned on the training leads."""

    base_rate: float
    labels: dict[str, str]
    levels: dict[str, dict[str, list[float]]]  # variable -> level -> [conversion rate, leads]
    numeric: dict[str, dict[str, list[float]]]  # variable -> quantiles, bin edges, bin rates, bin leads
    yes_no: list[str]
    groups: dict[str, list[str]]  # fit / engagement -> model variables
    group_quantiles: dict[str, list[float]] = field(default_factory=dict)
    min_leads: int = 20
    #: How a number in a reason is written: decimal mark, thousands separator (``report``).
    number_style: list[str] = field(default_factory=lambda: [".", ","])
    #: How a yes/no value is written: the export's own words (``data.yes_values``/``no_values``).
    yes_no_words: list[str] = field(default_factory=lambda: ["yes", "no"])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReasonBook:
        return cls(**data)

    def __post_init__(self) -> None:
        self._style = NumberStyle(*self.number_style)
        self._arrays = {v: {k: np.asarray(a, dtype=float) for k, a in info.items()} for v, info in self.numeric.items()}
        self._group_q = {g: np.asarray(q, dtype=float) for g, q in self.group_quantiles.items()}
        self._group_cols: dict[tuple[str, ...], dict[str, list[int]]] = {}
        # (variable, value, value shown) -> texts, one lead at a time; shared by the service's
        # threads: read with one .get and filled with one assignment (each atomic), cleared when large.
        self._memo: dict[tuple[str, Any, Any], tuple[str, str, str]] = {}
        self._lists = {
            v: ([float(x) for x in info["quantiles"]], [float(x) for x in info["edges"]]) for v, info in self.numeric.items()
        }
        self._texts: dict[tuple[Any, ...], str] = {}

    def label(self, variable: str) -> str:
        return self.labels.get(variable, variable)

    def _level_text(self, variable: str, level: str) -> str:
        key = ("level", variable, level)
        if key not in self._texts:
            found = self.levels.get(variable, {}).get(level)
            if found is None:
                text = "not filled in" if level == MISSING else "a value not seen in the training leads"
            elif found[1] < self.min_leads:
                text = f"few such leads in the training data ({int(found[1])})"
            else:
                text = f"{_pct(found[0])} of such leads converted (all leads: {_pct(self.base_rate)})"
            self._texts[key] = text
        return self._texts[key]

    def _range_text(self, variable: str, at_least: int, at_most: int, b: int) -> str:
        key = ("range", variable, at_least, at_most, b)
        if key not in self._texts:
            info = self.numeric[variable]
            where = f"top {at_least} % of leads" if at_least <= 50 else f"bottom {at_most} % of leads"
            self._texts[key] = (
                where
                if info["leads"][b] < self.min_leads
                else f"{where}; {_pct(info['rates'][b])} of leads in this range converted"
            )
        return self._texts[key]

    def _one_number(self, variable: str, v: float) -> str:
        """:meth:`_numeric_evidence` of one value, with the same arithmetic (bisect on lists)."""
        if math.isnan(v):
            return self._level_text(variable, MISSING)
        q, edges = self._lists[variable]
        steps, n_bins = len(q) - 1, len(self.numeric[variable]["rates"])
        at_least = max(1, math.ceil(100.0 * (1.0 - bisect.bisect_left(q, v) / steps)))
        at_most = max(1, math.ceil(100.0 * bisect.bisect_right(q, v) / steps))
        b = min(max(bisect.bisect_right(edges, v) - 1, 0), n_bins - 1)
        return self._range_text(variable, at_least, at_most, b)

    def _numeric_evidence(self, variable: str, values: np.ndarray) -> list[str]:
        if len(values) <= SMALL:
            return [self._one_number(variable, float(v)) for v in values]
        a = self._arrays[variable]
        q, steps = a["quantiles"], len(a["quantiles"]) - 1
        at_least = np.maximum(1, np.ceil(100.0 * (1.0 - np.searchsorted(q, values, side="left") / steps))).astype(int)
        at_most = np.maximum(1, np.ceil(100.0 * np.searchsorted(q, values, side="right") / steps)).astype(int)
        bins = np.clip(np.searchsorted(a["edges"], values, side="right") - 1, 0, len(a["rates"]) - 1)
        missing = np.isnan(values)
        return [
            self._level_text(variable, MISSING) if m else self._range_text(variable, int(lo), int(hi), int(b))
            for m, lo, hi, b in zip(missing, at_least, at_most, bins, strict=True)
        ]

    def evidence(self, variable: str, values: Sequence[Any] | np.ndarray) -> list[str]:
        """The evidence sentence for each (cleaned) value of one variable."""
        if variable in self.numeric:
            return self._numeric_evidence(variable, np.asarray(values, dtype=float))
        if variable in self.levels:
            return [
                self._level_text(variable, format_value(v, True) if variable in self.yes_no else MISSING if _missing(v) else str(v))
                for v in values
            ]
        return [""] * len(values)

    def values(self, variable: str, values: Sequence[Any] | np.ndarray) -> list[str]:
        """Each value as the reason shows it (:func:`format_value`; numbers in the report's style)."""
        yes_no = variable in self.yes_no
        texts = [format_value(v, yes_no) for v in values]
        if yes_no and self.yes_no_words != ["yes", "no"]:
            words = dict(zip(("yes", "no"), self.yes_no_words, strict=True))
            return [words.get(t, t) for t in texts]
        if variable in self.numeric and self._style != NumberStyle():
            return [self._style.apply(t) for t in texts]
        return texts

    def reasons(
        self,
        contrib: np.ndarray,
        variables: Sequence[str],
        values: dict[str, np.ndarray],
        positive: int,
        negative: int,
        shown: dict[str, np.ndarray] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Per lead: up to ``positive`` reasons pushing the score up (strongest first), then up
        to ``negative`` pulling it down. ``contrib``: leads × variables log-odds;
        ``values``: the cleaned value arrays per variable, which the evidence reads; ``shown``
        (default ``values``): the values the reasons show (:func:`shown_values`). Texts are
        built per variable for all the leads it explains at once."""
        shown = values if shown is None else shown
        n = contrib.shape[0]
        out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        k_pos, k_neg = min(positive, contrib.shape[1]), min(negative, contrib.shape[1])
        if k_pos + k_neg == 0 or n == 0:
            return out
        order = np.argsort(-contrib, axis=1, kind="stable")
        if n <= SMALL:  # one lead or a few (the service): the same choice and texts, without array set-up
            return [self._lead_reasons(contrib[i], order[i], variables, values, shown, i, k_pos, k_neg) for i in range(n)]
        chosen = np.hstack([order[:, :k_pos], order[:, ::-1][:, :k_neg]])
        effect = np.take_along_axis(contrib, chosen, axis=1)
        keep = np.hstack([effect[:, :k_pos] > 0, effect[:, k_pos:] < 0])
        rows, slots = np.nonzero(keep)
        var_j = chosen[rows, slots]
        value_text = np.empty(len(rows), dtype=object)
        evidence = np.empty(len(rows), dtype=object)
        for j in np.unique(var_j):
            name, hit = variables[j], var_j == j
            vals = values[name][rows[hit]] if name in values else np.full(int(hit.sum()), None, dtype=object)
            value_text[hit] = self.values(name, shown[name][rows[hit]] if name in shown else vals)
            evidence[hit] = self.evidence(name, vals)
        labels = [self.label(v) for v in variables]
        for r, j, e, vt, ev in zip(
            rows.tolist(),
            var_j.tolist(),
            np.round(effect[rows, slots], 3).tolist(),
            value_text.tolist(),
            evidence.tolist(),
            strict=True,
        ):
            out[r].append({"variable": variables[j], "label": labels[j], "value": vt, "effect": e, "evidence": ev})
        return out

    def _lead_reasons(
        self,
        row: np.ndarray,
        order: np.ndarray,
        variables: Sequence[str],
        values: dict[str, np.ndarray],
        shown: dict[str, np.ndarray],
        i: int,
        k_pos: int,
        k_neg: int,
    ) -> list[dict[str, Any]]:
        effects = row.tolist()
        ranked = order.tolist()
        chosen = [j for j in ranked[:k_pos] if effects[j] > 0] + [j for j in ranked[::-1][:k_neg] if effects[j] < 0]
        rounded = np.round(row, 3).tolist()
        out = []
        for j in chosen:
            name = variables[j]
            v = values[name][i] if name in values else None
            s = shown[name][i] if name in shown else v
            key = (name, v if v == v else MISSING, s if s == s else MISSING)  # NaN: one key
            texts = self._memo.get(key)  # one lookup: safe while other threads fill or clear the memo
            if texts is None:
                if len(self._memo) > 100_000:
                    self._memo.clear()
                one = np.array([v], dtype=object if isinstance(v, str) or v is None else float)
                own = np.array([s], dtype=object if isinstance(s, str) or s is None else float)
                texts = self._memo[key] = (self.label(name), self.values(name, own)[0], self.evidence(name, one)[0])
            label, value, evidence = texts
            out.append({"variable": name, "label": label, "value": value, "effect": rounded[j], "evidence": evidence})
        return out

    def group_scores(self, contrib: np.ndarray, variables: Sequence[str]) -> dict[str, np.ndarray]:
        """``fit_score`` and ``engagement_score`` (0-100 floats, NaN when the group has no
        variable in the model): the share of training leads whose group added less."""
        out = {}
        key = tuple(variables)
        if key not in self._group_cols:
            index = {v: j for j, v in enumerate(variables)}
            self._group_cols[key] = {g: [index[v] for v in self.groups.get(g, []) if v in index] for g in GROUPS}
        for g, cols in self._group_cols[key].items():
            q = self._group_q.get(g)
            if not cols or q is None or not len(q):
                out[f"{g}_score"] = np.full(contrib.shape[0], np.nan)
                continue
            partial = contrib[:, cols].sum(axis=1)
            out[f"{g}_score"] = np.floor(100.0 * np.searchsorted(q, partial, side="right") / (len(q) - 1) + 0.5)
        return out


def reason_text(reasons: Sequence[dict[str, Any]]) -> str:
    """One readable line (CSV, CRM payload): ``+ Label: value — evidence | - ...``."""
    return " | ".join(
        f"{'+' if r['effect'] > 0 else '-'} {r['label']}: {r['value']} — {r['evidence']}"
        if r["evidence"]
        else f"{'+' if r['effect'] > 0 else '-'} {r['label']}: {r['value']}"
        for r in reasons
    )


def build_reason_book(
    cfg: ProjectConfig, prepared: pd.DataFrame, y: Sequence[int], contrib: np.ndarray, variables: Sequence[str]
) -> ReasonBook:
    """The evidence book from the training leads: ``prepared`` (cleaned values), outcomes
    ``y``, and the model's contributions (leads × ``variables``) on the same leads."""
    y_arr = np.asarray(y, dtype=float)
    yes_no = [v for v in variables if v in cfg.data.columns.yes_no]
    levels: dict[str, dict[str, list[float]]] = {}
    numeric: dict[str, dict[str, list[float]]] = {}
    for v in variables:
        if v not in prepared.columns:
            continue
        col = prepared[v]
        if v in yes_no:
            lv = col.map(lambda x: format_value(x, True))
            levels[v] = level_profile(lv, y_arr)
        elif pd.api.types.is_numeric_dtype(col):
            arr = col.to_numpy(dtype=float)
            numeric[v] = numeric_profile(arr, y_arr)
            if np.isnan(arr).any():
                levels[v] = {MISSING: level_profile(pd.Series(np.where(np.isnan(arr), MISSING, "")), y_arr)[MISSING]}
        else:
            levels[v] = level_profile(col.astype(object).where(col.notna(), MISSING).astype(str), y_arr)
    groups = fit_engagement_groups(cfg, variables)
    index = {v: j for j, v in enumerate(variables)}
    quantiles = {
        g: np.quantile(contrib[:, [index[v] for v in members]].sum(axis=1), GRID).tolist()
        for g, members in groups.items()
        if members
    }
    return ReasonBook(
        base_rate=float(y_arr.mean()),
        labels={v: cfg.model_data.labels.get(v, v) for v in variables},
        levels=levels,
        numeric=numeric,
        yes_no=yes_no,
        groups=groups,
        group_quantiles=quantiles,
        min_leads=cfg.scoring.reasons.min_leads,
        number_style=[cfg.report.decimal_mark, cfg.report.thousands_separator],
        yes_no_words=[_word(cfg.data.yes_values, "yes"), _word(cfg.data.no_values, "no")],
    )


def reason_book_for(cfg: ProjectConfig, model: object, X: pd.DataFrame, y: Sequence[int]) -> ReasonBook:
    """:func:`build_reason_book` for a fitted scoring pipeline on its training leads."""
    prepared, encoded = prepare(model, X)
    contrib, variables = contribution_matrix(model, prepared, encoded)
    return build_reason_book(cfg, as_frame(prepared), y, contrib, variables)


def group_auc(book: ReasonBook, model: object, X: pd.DataFrame, y: Sequence[int]) -> dict[str, float | None]:
    """ROC-AUC of the fit and of the engagement score alone on leads ``X, y`` (None when the
    group has no variable in the model or ``y`` has one class)."""
    prepared, encoded = prepare(model, X)
    contrib, variables = contribution_matrix(model, prepared, encoded)
    out: dict[str, float | None] = {}
    for name, s in book.group_scores(contrib, variables).items():
        ok = not np.isnan(s).all() and len(set(np.asarray(y).tolist())) == 2
        out[name] = float(roc_auc_score(y, s)) if ok else None
    return out
