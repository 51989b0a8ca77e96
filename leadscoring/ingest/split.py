"""Splitting validated leads: the held-out validation split, stratified samples, and what
model manifests record of the leads a model learned from (the fingerprint of the frame, the
digest of its lead ids).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from leadscoring.config import ProjectConfig
from leadscoring.errors import LeadDataError


def split_validation(df: pd.DataFrame, cfg: ProjectConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into (working set, validation set) with the configured share: the most recent
    leads when ``data.date_column`` is configured (what the model will meet in production;
    leads without a date count as the oldest), else a stratified random split with the seed."""
    target = cfg.data.target_column
    if df[target].nunique() < 2:
        raise LeadDataError(f"target column '{target}' has a single class; cannot train a model")
    date = cfg.data.date_column
    if date is not None and date in df.columns:
        when = pd.to_datetime(df[date], errors="coerce").reset_index(drop=True)
        order = when.sort_values(kind="stable", na_position="first").index.to_numpy()
        n_valid = max(1, int(round(len(df) * cfg.split.validation_share)))
        frame = df.reset_index(drop=True)
        work, valid = frame.iloc[order[:-n_valid]], frame.iloc[order[-n_valid:]]
        for name, part in (("working", work), ("validation", valid)):
            if part[target].nunique() < 2:
                raise LeadDataError(
                    f"the {name} split by '{date}' (most recent {cfg.split.validation_share:.0%} "
                    "as validation) has a single outcome; cannot train and evaluate a model"
                )
        return work.reset_index(drop=True), valid.reset_index(drop=True)
    work, valid = train_test_split(df, test_size=cfg.split.validation_share, stratify=df[target], random_state=cfg.split.seed)
    return work.reset_index(drop=True), valid.reset_index(drop=True)


def check_minimum_data(y: pd.Series, cfg: ProjectConfig) -> None:
    """Stop before training when the export has too few conversions or non-conversions
    (``split.min_positives`` / ``split.min_negatives``, 40 and 40 by default)."""
    yv = pd.to_numeric(pd.Series(y), errors="coerce")
    pos, neg = int((yv == 1).sum()), int((yv == 0).sum())
    need_pos, need_neg = cfg.split.min_positives, cfg.split.min_negatives
    if pos < need_pos or neg < need_neg:
        raise LeadDataError(
            f"too little data to train a model: {pos} conversions and {neg} non-conversions in "
            f"'{cfg.data.target_column}'; need at least {need_pos} and {need_neg} "
            "(split.min_positives / split.min_negatives)"
        )


def stratified_sample(df: pd.DataFrame, n: int | None, target: str, seed: int, min_per_class: int = 0) -> pd.DataFrame:
    """A stratified sample of ``n`` leads (all of them when ``n`` is None or ≥ len), holding at
    least ``min_per_class`` leads of each outcome where the export has them: a quick run on an
    export with few conversions still has enough to train (the sample then has a few more)."""
    if n is None or n >= len(df):
        return df
    sample, rest = train_test_split(df, train_size=n, stratify=df[target], random_state=seed)
    topped = [sample]
    for outcome, have in sample[target].value_counts().reindex(df[target].unique(), fill_value=0).items():
        short = min(min_per_class, int((df[target] == outcome).sum())) - int(have)
        if short > 0:
            topped.append(rest[rest[target] == outcome].sample(short, random_state=seed))
    return pd.concat(topped).sort_index().reset_index(drop=True)


def fingerprint(df: pd.DataFrame) -> str:
    """SHA-256 of a frame's content (column names, order and values)."""
    h = hashlib.sha256("\x1f".join(map(str, df.columns)).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _id_hashes(ids: Iterable[object]) -> np.ndarray:
    texts = np.asarray([str(i) for i in ids], dtype=object)
    return (pd.util.hash_array(texts, categorize=False) & 0xFFFFFFFF).astype("<u4")


def ids_digest(ids: Iterable[object]) -> str:
    """The lead ids a model trained on, in about 4 bytes a lead: their distinct 32-bit hashes
    (pandas' fixed-key hash of the id as text), sorted, compressed and in base64, for its
    manifest. :func:`in_ids_digest` tells which ids are in it; an id that is not collides with
    one that is with a chance of about n / 4 billion (n leads)."""
    return base64.b64encode(zlib.compress(np.unique(_id_hashes(ids)).tobytes(), 9)).decode("ascii")


def in_ids_digest(digest: str, ids: Iterable[object]) -> np.ndarray:
    """Which of ``ids`` are in ``digest`` (:func:`ids_digest`)."""
    known = np.frombuffer(zlib.decompress(base64.b64decode(digest)), dtype="<u4")
    return np.isin(_id_hashes(ids), known)


def training_ids(cfg: ProjectConfig, leads: pd.DataFrame) -> str | None:
    """:func:`ids_digest` of the leads a model trains on, for its manifest; None when the ids
    are row numbers (``data.id_from_row_number``), which name other leads in another file."""
    return None if cfg.data.id_from_row_number else ids_digest(leads[cfg.data.id_column])


def split_xy(df: pd.DataFrame, cfg: ProjectConfig) -> tuple[pd.DataFrame, pd.Series]:
    """Features (raw layout, without target) and target."""
    t = cfg.data.target_column
    return df.drop(columns=[t]), df[t]
