"""Value helpers shared by validation and cleaning: what counts as missing, and a
function applied once per distinct value (lead columns have few).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd


def is_missing(v: object) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and v != v)


def map_unique(values: object, fn: Callable[[object], object], dtype: object = object) -> np.ndarray:
    """``fn`` applied to every value, computed once per distinct value (missing → ``fn(None)``).

    Lead columns have few distinct values, so this costs one hash pass in C plus a few
    Python calls, whatever the number of leads.
    """
    arr = np.asarray(values, dtype=object)
    if len(arr) <= 64:  # a few leads (the scoring service): hashing costs more than it saves
        return np.array([fn(None if is_missing(v) else v) for v in arr], dtype=dtype)
    codes, uniques = pd.factorize(arr, use_na_sentinel=True)
    mapped = np.array([*(fn(u) for u in uniques), fn(None)], dtype=dtype)
    return mapped[codes]
