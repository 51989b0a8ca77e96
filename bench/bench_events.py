"""Behavioural features at scale: DuckDB against plain pandas, and the service's live lookup.

Generates ``--events`` GA4 events (nested ``event_params``: ga_session_id,
engagement_time_msec, page_location, and an ``amount`` on ``simulator`` events) for
``--visitors`` visitors as daily export parquet files (``events_YYYYMMDD.parquet``, made
with pyarrow/numpy one day at a time, so memory stays bounded), ingests them into the
event store (``leadscoring.events.store.ingest``), then measures, each in its own process
(peak memory = that process's resident memory, sampled every 50 ms from /proc):

(a) ``compute_features`` (DuckDB) for one lead per visitor with a representative feature
    set (count, count in the last 30 days, sessions, active days, days since last,
    engagement seconds, average amount, decayed count);
(b) the same features in plain pandas (read, explode the params, pivot, group by). When
    its projected peak memory exceeds ``--pandas-max-gb`` it runs on a fraction of the
    days and its time and memory are extrapolated linearly (the output says so);
(c) :class:`leadscoring.events.live.LiveEvents` loaded with every event: load time and
    memory, then ``--lookups`` single-lead lookups (random visitors) as the service does
    them: p50 / p95.

The pandas and DuckDB features are checked equal on one day's events first. Run on demand
(not a test); a smoke check: ``--events 200000 --visitors 20000``.

    .venv/bin/python bench/bench_events.py [--events 10000000] [--visitors 1000000] [--days 90]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = [
    {"name": "views", "kind": "count", "event": "page_view"},
    {"name": "views_30d", "kind": "count", "event": "page_view", "days": 30},
    {"name": "sessions", "kind": "sessions"},
    {"name": "active_days", "kind": "active_days"},
    {"name": "recency_d", "kind": "days_since_last"},
    {"name": "engaged_s", "kind": "engagement_seconds"},
    {"name": "avg_amount", "kind": "avg", "event": "simulator", "param": "amount"},
    {"name": "decayed", "kind": "decayed", "half_life_days": 7},
]
NAMES = ["page_view", "user_engagement", "scroll", "session_start", "simulator"]
SHARES = [0.5, 0.2, 0.15, 0.1, 0.05]
PAGES = [f"https://bank.example/{p}" for p in ("home", "rates", "mortgage", "simulator", "contact", "blog/a", "blog/b")]
SOURCES = ["google", "bing", "(direct)", "newsletter"]
START = datetime(2026, 1, 1, tzinfo=UTC)
PARAM = pa.struct(
    [
        ("key", pa.string()),
        (
            "value",
            pa.struct(
                [
                    ("string_value", pa.string()),
                    ("int_value", pa.int64()),
                    ("float_value", pa.float64()),
                    ("double_value", pa.float64()),
                ]
            ),
        ),
    ]
)


# -- data ---------------------------------------------------------------------------------
def visitor_ids(numbers: np.ndarray) -> pa.Array:
    """``v0000042`` style visitor keys, vectorised."""
    import pyarrow.compute as pc

    return pc.binary_join_element_wise("v", pc.utf8_lpad(pa.array(numbers).cast(pa.string()), 7, "0"), "")


def day_table(rng: np.random.Generator, day: int, n: int, visitors: int) -> pa.Table:
    """One day of GA4 export rows (nested params), ``n`` events."""
    import pyarrow.compute as pc

    who = rng.integers(0, visitors, n)
    ts = np.sort(rng.integers(0, 86_400_000_000, n)) + int((START + timedelta(days=day)).timestamp() * 1e6)
    kind = rng.choice(len(NAMES), n, p=SHARES)
    sim = kind == NAMES.index("simulator")
    width = 3 + sim.astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(width)])
    total = int(offsets[-1])
    base = offsets[:-1]
    key_idx = np.empty(total, np.int64)
    for j in range(3):
        key_idx[base + j] = j
    key_idx[base[sim] + 3] = 3
    keys = pc.take(pa.array(["ga_session_id", "engagement_time_msec", "page_location", "amount"]), key_idx)
    ints = np.zeros(total, np.int64)
    ints[base] = day * 10_000_000 + who  # a visitor's session of that day
    ints[base + 1] = rng.integers(0, 60_000, n)
    int_mask = (key_idx != 0) & (key_idx != 1)
    page_idx = np.full(total, len(PAGES))
    page_idx[base + 2] = rng.integers(0, len(PAGES), n)
    doubles = np.zeros(total)
    doubles[base[sim] + 3] = rng.integers(50, 5000, int(sim.sum())) * 100.0
    value = pa.StructArray.from_arrays(
        [
            pc.take(pa.array([*PAGES, None]), page_idx),
            pa.array(ints, mask=int_mask),
            pa.nulls(total, pa.float64()),
            pa.array(doubles, mask=key_idx != 3),
        ],
        names=["string_value", "int_value", "float_value", "double_value"],
    )
    params = pa.ListArray.from_arrays(
        pa.array(offsets, pa.int32()), pa.StructArray.from_arrays([keys, value], names=["key", "value"])
    )
    src = rng.integers(0, len(SOURCES), n)
    traffic = pa.StructArray.from_arrays(
        [
            pc.take(pa.array(["(organic)", "(organic)", "(direct)", "email"]), src),
            pc.take(pa.array(["organic", "organic", "(none)", "email"]), src),
            pc.take(pa.array(SOURCES), src),
        ],
        names=["name", "medium", "source"],
    )
    date = (START + timedelta(days=day)).strftime("%Y%m%d")
    return pa.table(
        {
            "event_date": pa.array([date] * n),
            "event_timestamp": pa.array(ts),
            "event_name": pc.take(pa.array(NAMES), kind),
            "event_params": params.cast(pa.list_(PARAM)),
            "user_pseudo_id": visitor_ids(who),
            "user_id": pa.nulls(n, pa.string()),
            "traffic_source": traffic,
        }
    )


def generate(folder: Path, events: int, visitors: int, days: int, seed: int = 0) -> list[str]:
    """GA4 daily export files for ``events`` events over ``days`` days; their paths."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    per_day = np.full(days, events // days)
    per_day[: events % days] += 1
    files = []
    for day, n in enumerate(per_day):
        path = folder / f"events_{(START + timedelta(days=day)).strftime('%Y%m%d')}.parquet"
        pq.write_table(day_table(rng, day, int(n), visitors), path)
        files.append(str(path))
    return files


def config(root: Path) -> object:
    from leadscoring.config import DataConfig, PathsConfig, ProjectConfig

    data = DataConfig(id_column="lead", target_column="won", columns={"numeric": ["x"]})
    return ProjectConfig(
        root=root,
        paths=PathsConfig(raw_data="leads.csv"),
        data=data,
        events={"path": "export/events_*.parquet", "store": "store", "lead_key": "visitor", "features": FEATURES},
    )


def leads_frame(visitors: int) -> pd.DataFrame:
    return pd.DataFrame({"lead": np.arange(visitors).astype(str), "visitor": visitor_ids(np.arange(visitors)).to_pandas()})


# -- the pandas version -------------------------------------------------------------------
def pandas_features(files: list[str], leads: pd.DataFrame, at: datetime) -> pd.DataFrame:
    """The FEATURES in plain pandas: read the export, explode the params, pivot them, group by visitor."""
    ev = pd.concat(
        [pd.read_parquet(f, columns=["event_timestamp", "event_name", "event_params", "user_pseudo_id"]) for f in files],
        ignore_index=True,
    )
    cutoff = pd.Timestamp(at).tz_convert(None)
    ev["ts"] = pd.to_datetime(ev["event_timestamp"], unit="us")
    ev = ev[ev["ts"] < cutoff]
    params = ev["event_params"].explode()
    flat = pd.DataFrame(
        {
            "row": params.index,
            "key": [p["key"] for p in params],
            "int": [p["value"]["int_value"] for p in params],
            "double": [p["value"]["double_value"] for p in params],
        }
    )
    wide = flat[flat["key"].isin(["ga_session_id", "engagement_time_msec", "amount"])].pivot_table(
        index="row", columns="key", values=["int", "double"], aggfunc="first"
    )
    ev = ev.drop(columns="event_params").join(
        pd.DataFrame(
            {
                "session": wide[("int", "ga_session_id")],
                "engagement": wide[("int", "engagement_time_msec")],
                "amount": wide[("double", "amount")] if ("double", "amount") in wide else np.nan,
            }
        )
    )
    age_days = (cutoff - ev["ts"].dt.floor("s")).dt.total_seconds() / 86400.0  # whole seconds, as SQL date_diff
    ev = ev.assign(
        view=ev["event_name"].eq("page_view"),
        view_30d=ev["event_name"].eq("page_view") & (age_days <= 30),
        day=ev["ts"].dt.floor("D"),
        weight=0.5 ** (age_days / 7),
        sim_amount=ev["amount"].where(ev["event_name"].eq("simulator")),
    )
    g = ev.groupby("user_pseudo_id")
    out = pd.DataFrame(
        {
            "views": g["view"].sum(),
            "views_30d": g["view_30d"].sum(),
            "sessions": g["session"].nunique(),
            "active_days": g["day"].nunique(),
            "recency_d": (cutoff - g["ts"].max().dt.floor("s")).dt.total_seconds() / 86400.0,
            "engaged_s": g["engagement"].sum() / 1000.0,
            "avg_amount": g["sim_amount"].mean(),
            "decayed": g["weight"].sum(),
        }
    )
    out = out.reindex(leads["visitor"].to_numpy())
    zero = ["views", "views_30d", "sessions", "active_days", "engaged_s", "decayed"]
    out[zero] = out[zero].fillna(0)
    return out.reset_index(drop=True).astype(float)


# -- workers (one process each) -------------------------------------------------------------
def worker(mode: str, root: Path, visitors: int, at: str, fraction: float, lookups: int) -> dict[str, float]:
    from leadscoring.events.engine import compute_features, store_files

    cfg = config(root)
    leads = leads_frame(visitors)
    files = store_files(cfg)
    t0 = time.perf_counter()
    if mode == "duckdb":
        out = compute_features(cfg, leads, at=at, files=files)
        return {"seconds": time.perf_counter() - t0, "rows": len(out)}
    if mode == "pandas":
        some = files[: round(len(files) * fraction)]
        if not some:  # the floor: the process with its imports and leads, no events
            return {"seconds": 0.0, "rows": 0, "files": 0}
        out = pandas_features(some, leads, datetime.fromisoformat(at))
        return {"seconds": time.perf_counter() - t0, "rows": len(out), "files": len(some)}
    from leadscoring.events.live import LiveEvents

    live = LiveEvents(cfg, background=False)
    load = time.perf_counter() - t0
    rss = _rss_mb(os.getpid())
    rng = np.random.default_rng(1)
    times = []
    for i in rng.integers(0, visitors, lookups):
        lead = leads.iloc[[int(i)]]
        t = time.perf_counter()
        live.features(lead, at=at)
        times.append(time.perf_counter() - t)
    ms = np.array(times) * 1000
    return {
        "seconds": load,
        "events": live.rows,
        "rss_loaded_mb": rss,
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "max_ms": float(ms.max()),
    }


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def measure(args: list[str]) -> tuple[dict[str, float], float, float]:
    """Run one worker: its result, wall seconds and peak resident memory (MB, sampled every 50 ms)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--worker", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _rss_mb(proc.pid))
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args[0]} failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1]), time.perf_counter() - t0, peak


def check_same(root: Path, export: list[str], visitors: int, at: str) -> float:
    """Largest difference between the pandas and DuckDB features on one day's events."""
    from leadscoring.events.engine import compute_features

    leads = leads_frame(min(visitors, 50_000))
    duck = compute_features(config(root), leads, at=at, files=export[:1])
    pand = pandas_features(export[:1], leads, datetime.fromisoformat(at))
    diff = (duck.reset_index(drop=True) - pand).abs().to_numpy()
    both_nan = duck.isna().to_numpy() == pand.isna().to_numpy()
    if not both_nan.all():
        raise AssertionError("pandas and DuckDB disagree on which features are missing")
    return float(np.nanmax(diff)) if np.isfinite(diff).any() else 0.0


def run_pandas(common: list[str], days: int, max_mb: float) -> tuple[float, float, str]:
    """Pandas time and peak memory for all the events: measured, or measured on a fraction
    of the days and extrapolated linearly when the projection exceeds ``max_mb``."""
    pilot_days = max(1, days // 30)
    res, _, peak = measure(["pandas", *common, "--fraction", str(pilot_days / days)])
    floor = measure(["pandas", *common, "--fraction", "0"])[2]  # the process without events: read nothing
    per_day = max(peak - floor, 1.0) / pilot_days
    fit = int((max_mb - floor) // per_day)
    if fit >= days:
        res, _, peak = measure(["pandas", *common, "--fraction", "1"])
        return res["seconds"], peak, "measured on all the events"
    use = max(pilot_days, min(days, fit))
    res, _, peak = measure(["pandas", *common, "--fraction", str(use / days)])
    scale = days / use
    note = (
        f"EXTRAPOLATED linearly from {use} of {days} days ({100 / scale:.0f}% of the events; "
        f"projected peak over {max_mb / 1024:.1f} GB)"
    )
    return res["seconds"] * scale, floor + (peak - floor) * scale, note


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--visitors", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--pandas-max-gb", type=float, default=2.5)
    ap.add_argument("--worker", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    at = (START + timedelta(days=args.days + 1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    with tempfile.TemporaryDirectory(prefix="bench_events_") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        export = generate(root / "export", args.events, args.visitors, args.days)
        gen = time.perf_counter() - t0
        size = sum(os.path.getsize(f) for f in export) / 2**20
        from leadscoring.events.store import ingest

        t0 = time.perf_counter()
        written = ingest(config(root), export)
        ingested = time.perf_counter() - t0
        print(
            f"{args.events:,} GA4 events ({size:.0f} MB parquet, {args.days} daily files) for {args.visitors:,} "
            f"visitors generated in {gen:.1f}s; ingested into the store in {ingested:.1f}s "
            f"({sum(written.values()):,} rows)",
            flush=True,
        )
        print(
            f"pandas = DuckDB on one day's events: largest difference {check_same(root, export, args.visitors, at):.2e}", flush=True
        )
        common = [str(root), str(args.visitors), at, "--lookups", str(args.lookups)]
        duck, duck_wall, duck_peak = measure(["duckdb", *common])
        print(f"(a) DuckDB compute_features, {args.visitors:,} leads: {duck['seconds']:.1f}s, peak {duck_peak:.0f} MB", flush=True)
        pandas_s, pandas_peak, note = run_pandas(common, args.days, args.pandas_max_gb * 1024)
        print(f"(b) pandas, same features: {pandas_s:.1f}s, peak {pandas_peak:.0f} MB ({note})", flush=True)
        live, _, live_peak = measure(["live", *common])
        print(
            f"(c) LiveEvents: {live['events']:,} events loaded in {live['seconds']:.1f}s, {live['rss_loaded_mb']:.0f} MB "
            f"resident once loaded (peak {live_peak:.0f} MB while loading); {args.lookups} single-lead lookups: "
            f"p50 {live['p50_ms']:.2f} ms, p95 {live['p95_ms']:.2f} ms, max {live['max_ms']:.1f} ms",
            flush=True,
        )
    speedup = pandas_s / duck["seconds"]
    print(
        f"goals: DuckDB >= 5x faster than pandas: {speedup:.1f}x {'OK' if speedup >= 5 else 'MISSED'}; "
        f"DuckDB peak < 2 GB: {duck_peak:.0f} MB {'OK' if duck_peak < 2048 else 'MISSED'}; "
        f"live p50 < 5 ms: {live['p50_ms']:.2f} ms {'OK' if live['p50_ms'] < 5 else 'MISSED'}"
    )
    print(f"machine: {os.cpu_count()} cores, DuckDB {__import__('duckdb').__version__}")


def worker_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["duckdb", "pandas", "live"])
    ap.add_argument("root", type=Path)
    ap.add_argument("visitors", type=int)
    ap.add_argument("at")
    ap.add_argument("--lookups", type=int, default=500)
    ap.add_argument("--fraction", type=float, default=1.0)
    a = ap.parse_args(argv)
    print(json.dumps(worker(a.mode, a.root, a.visitors, a.at, a.fraction, a.lookups)))


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker_main(sys.argv[sys.argv.index("--worker") + 1 :])
    else:
        main()
