"""Segment and score, one story: how each segment's leads spread over the score and buckets.

A segment says **who** a lead is (a group built from what is known before the sales
contact, for planning campaigns); the score says **how likely this lead is to convert now**
(for the call list). The two can disagree: a top-bucket lead can sit in a weak segment.
:func:`segment_score_table` shows, per segment, the score distribution and the bucket
shares, and :func:`segment_score_story` turns that table into plain-English paragraphs
that present such a lead as the exception it is.

The scores and buckets come from the caller (the serving layer computes them); nothing
here scores a lead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from leadscoring.formats import count, percent

#: What the story says a segment and a score are for.
SEGMENT_VS_SCORE = (
    "A **segment** says *who* a lead is: a group of similar leads, built from what was known before the "
    "sales contact; use it to plan campaigns, channels and content. The **score** says *how likely this "
    "lead is to convert now*, from everything the model sees about the lead itself, its latest activity "
    "included; use it to order the call list. Most leads of a strong segment score high and most of a "
    "weak segment score low, but not all of them: a lead's own data can outweigh its segment's profile."
)


def bucket_share_column(bucket: str) -> str:
    """Table column: the share of a segment's leads in ``bucket``."""
    return f"share_{bucket}"


def top_columns(top_bucket: str) -> dict[str, str]:
    """Table columns about the top bucket: its leads in the segment (``count``), their mean
    score (``mean_score``) and observed conversion (``conversion``), and the segment's share
    of all top-bucket leads (``share_of_all``)."""
    return {
        "count": f"{top_bucket}_leads",
        "mean_score": f"{top_bucket}_mean_score",
        "conversion": f"{top_bucket}_conversion_rate",
        "share_of_all": f"share_of_all_{top_bucket}",
    }


def segment_score_table(
    segment_names: Sequence[str] | np.ndarray,
    scores: Sequence[int] | np.ndarray,
    buckets: Sequence[str] | np.ndarray,
    bucket_order: Sequence[str],
    y: Sequence[int] | np.ndarray | None = None,
    order: Sequence[str] | None = None,
) -> pd.DataFrame:
    """One row per segment: leads, share of leads, conversion rate (when ``y`` is given),
    score quartiles (``score_p25``, ``score_median``, ``score_p75``), the share of the
    segment's leads in each bucket (in ``bucket_order``, highest first), and about the top
    bucket (``bucket_order[0]``, see :func:`top_columns`): how many of the segment's leads
    are in it, their mean score and conversion (NaN when none), and the share of all
    top-bucket leads that are in this segment (0 when no lead is in the top bucket).

    Rows follow ``order`` (segments absent from the data are left out), else the sorted
    segment names.
    """
    if not bucket_order:
        raise ValueError("bucket_order: list the bucket names, highest first")
    seg = np.asarray(segment_names, dtype=object).astype(str)
    s = np.asarray(scores, dtype=float)
    b = np.asarray(buckets, dtype=object).astype(str)
    yv = None if y is None else np.asarray(y, dtype=float)
    if not len(seg) == len(s) == len(b) or (yv is not None and len(yv) != len(s)):
        raise ValueError("segment_names, scores, buckets (and y) need one value per lead")
    unknown = sorted(set(b) - {str(n) for n in bucket_order})
    if unknown:
        raise ValueError(f"buckets not in bucket_order: {unknown}")
    present = set(seg)
    rows_order = [str(n) for n in order if str(n) in present] if order is not None else sorted(present)
    top = str(bucket_order[0])
    in_top = b == top
    rows = [_segment_row(name, seg == name, s, b, yv, [str(n) for n in bucket_order], in_top) for name in rows_order]
    columns = [
        "segment",
        "leads",
        "share",
        *(["conversion_rate"] if yv is not None else []),
        "score_p25",
        "score_median",
        "score_p75",
        *(bucket_share_column(str(n)) for n in bucket_order),
        *(c for k, c in top_columns(top).items() if k != "conversion" or yv is not None),
    ]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"leads": int, top_columns(top)["count"]: int})


def _segment_row(
    name: str, m: np.ndarray, s: np.ndarray, b: np.ndarray, y: np.ndarray | None, bucket_order: list[str], in_top: np.ndarray
) -> dict[str, object]:
    """The table row of one segment (``m``: its leads)."""
    cols = top_columns(bucket_order[0])
    p25, median, p75 = np.percentile(s[m], [25, 50, 75])
    row: dict[str, object] = {"segment": name, "leads": int(m.sum()), "share": float(m.mean())}
    if y is not None:
        row["conversion_rate"] = float(y[m].mean())
    row.update(score_p25=float(p25), score_median=float(median), score_p75=float(p75))
    for bucket in bucket_order:
        row[bucket_share_column(bucket)] = float((b[m] == bucket).mean())
    top = m & in_top
    row[cols["count"]] = int(top.sum())
    row[cols["mean_score"]] = float(s[top].mean()) if top.any() else float("nan")
    if y is not None:
        row[cols["conversion"]] = float(y[top].mean()) if top.any() else float("nan")
    row[cols["share_of_all"]] = float(top.sum() / in_top.sum()) if in_top.any() else 0.0
    return row


def segment_score_story(table: pd.DataFrame, top_bucket: str, base_rate: float | None = None, low_ratio: float = 0.7) -> str:
    """Plain-English markdown from :func:`segment_score_table`: what a segment and a score
    are each for, which segments hold most of the top-bucket leads, and, for each weak
    segment that still holds top-bucket leads, how many and how their hit rate compares.

    A segment is weak when its conversion rate is at most ``low_ratio`` × ``base_rate``
    (``base_rate`` defaults to the table's overall conversion rate); without conversion
    (scoring only), when its median score is at most ``low_ratio`` × the leads' typical
    score (the lead-weighted mean of the segment medians).
    """
    cols = top_columns(top_bucket)
    if cols["count"] not in table.columns:
        raise ValueError(f"the table has no top-bucket columns for '{top_bucket}'")
    parts = [SEGMENT_VS_SCORE]
    n_top = int(table[cols["count"]].sum())
    if table.empty or int(table["leads"].sum()) == 0:
        return "\n\n".join([*parts, "There are no leads to describe."])
    if len(table) == 1:
        parts.append(
            f"All {count(int(table['leads'].sum()))} leads fall in one segment ('{table['segment'].iloc[0]}'), "
            "so the segment does not tell leads apart here: order the call list by the score alone."
        )
    if n_top == 0:
        parts.append(f"No lead reaches the top bucket '{top_bucket}', so no lead stands out from its segment in this data.")
        return "\n\n".join(parts)
    if len(table) > 1:
        parts.append(_where_top_leads_are(table, top_bucket, n_top))
        parts.append(_exceptions(table, top_bucket, base_rate, low_ratio))
    return "\n\n".join(parts)


def _where_top_leads_are(table: pd.DataFrame, top_bucket: str, n_top: int) -> str:
    """The segments that together hold at least half of the top-bucket leads (largest first)."""
    cols = top_columns(top_bucket)
    ranked = table.sort_values(cols["share_of_all"], ascending=False, kind="stable")
    held = ranked[ranked[cols["count"]] > 0]
    cumulative = held[cols["share_of_all"]].cumsum()
    main = held[(cumulative - held[cols["share_of_all"]]) < 0.5]
    listed = [
        f"{count(int(r[cols['count']]))} ({percent(r[cols['share_of_all']])})"
        f"{_verb(r[cols['count']]) if i == 0 else ''} in '{r['segment']}'"
        for i, (_, r) in enumerate(main.iterrows())
    ]
    text = f"**Where the {top_bucket} leads are.** " + (
        f"The only {top_bucket} lead is in '{main['segment'].iloc[0]}'."
        if n_top == 1
        else f"Of the {count(n_top)} {top_bucket} leads, {_join(listed)}."
    )
    empty = [f"'{name}'" for name in table.loc[table[cols["count"]] == 0, "segment"]]
    if empty:
        text += f" {_join(empty)} {'holds' if len(empty) == 1 else 'hold'} none."
    return text


def _weak(table: pd.DataFrame, base_rate: float | None, low_ratio: float) -> tuple[pd.Series, str]:
    """Whether each segment is weak (see :func:`segment_score_story`), and the rule in words."""
    if "conversion_rate" in table.columns:
        if base_rate is None:
            base_rate = float(np.average(table["conversion_rate"], weights=table["leads"]))
        cut = low_ratio * base_rate
        # one decimal: a segment converting at 8.4 % is not weak below 8.3 %, though both round to 8 %
        rule = f"converts at most {percent(cut, 1)}, {percent(low_ratio)} of the base rate of {percent(base_rate, 1)}"
        return table["conversion_rate"] <= cut, rule
    typical = float(np.average(table["score_median"], weights=table["leads"]))
    cut = low_ratio * typical
    rule = f"has a median score of at most {cut:.0f}, {percent(low_ratio)} of the typical median score of {typical:.0f}"
    return table["score_median"] <= cut, rule


def _exceptions(table: pd.DataFrame, top_bucket: str, base_rate: float | None, low_ratio: float) -> str:
    """One bullet per weak segment holding top-bucket leads, compared with the segment that
    holds the most top-bucket leads among the others."""
    cols = top_columns(top_bucket)
    weak, rule = _weak(table, base_rate, low_ratio)
    exceptions = table[weak & (table[cols["count"]] > 0)]
    if exceptions.empty:
        if weak.any():
            return (
                f"**Exceptions.** No {top_bucket} lead sits in a weak segment (one that {rule}): here the "
                "segment and the score agree."
            )
        return f"**Exceptions.** No segment is weak (a weak segment {rule}), so no {top_bucket} lead goes against its segment."
    bullets = [
        f"**Exceptions.** A segment is weak when it {rule}. These {top_bucket} leads sit in a weak "
        "segment; they are the exception, not the rule:",
        "",
    ]
    for _, row in exceptions.iterrows():
        others = table[(table["segment"] != row["segment"]) & (table[cols["count"]] > 0)]
        peer = others.sort_values(cols["count"], ascending=False, kind="stable").iloc[0] if len(others) else None
        bullets.append(f"- {_exception_sentence(row, peer, top_bucket)}")
    return "\n".join(bullets)


def _exception_sentence(row: pd.Series, peer: pd.Series | None, top_bucket: str) -> str:
    """The sentence about one weak segment's top-bucket leads (``peer``: the comparison segment)."""
    cols = top_columns(top_bucket)
    n = int(row[cols["count"]])
    share = row[bucket_share_column(top_bucket)]
    profile = f"conversion {percent(row['conversion_rate'])}, " if "conversion_rate" in row.index else ""
    text = (
        f"{count(n)} {'lead' if n == 1 else 'leads'} of segment '{row['segment']}' ({percent(share)} of the segment; "
        f"{profile}median score "
        f"{row['score_median']:.0f}) {'is' if n == 1 else 'are'} {top_bucket}: "
        f"{'its' if n == 1 else 'their'} own data, not the segment's profile, earns the score."
    )
    if peer is None:
        return text + (
            f" {'It is' if n == 1 else 'They are'} the only {top_bucket} "
            f"{'lead' if n == 1 else 'leads'}: call {'it' if n == 1 else 'them'}."
        )
    observed = cols["conversion"] in row.index
    key = cols["conversion"] if observed else cols["mean_score"]
    call = f" Call {'it' if n == 1 else 'them'}"
    peer_leads = f"the {top_bucket} leads of '{peer['segment']}'"
    if row[key] < peer[key]:
        text += f"{call}, but expect a lower hit rate than {peer_leads}"
    else:
        text += f"{call}: expect a hit rate no lower than {peer_leads}"
    text += f" (mean score {row[cols['mean_score']]:.0f} vs {peer[cols['mean_score']]:.0f}"
    if observed:
        text += f"; converted {percent(row[cols['conversion']])} vs {percent(peer[cols['conversion']])}"
    return text + ")."


def _verb(count: int) -> str:
    """' is' for one lead, ' are' for more."""
    return " is" if int(count) == 1 else " are"


def _join(items: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
