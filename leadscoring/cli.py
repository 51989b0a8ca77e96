"""Command line: ``leadscoring run | score | validate | serve | push | pull | crm check | retrain | monitor | cycle |
rollback | history | events``.

Errors caused by input (configuration, data, model files, a failing notebook) are printed
as one line on stderr with a non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from leadscoring.artifacts import ModelIntegrityError
from leadscoring.config import ConfigError, ProjectConfig, load_config, yaml_problem
from leadscoring.errors import LeadDataError, OutputPathError, is_disk_full
from leadscoring.events.store import ingest_report
from leadscoring.ingest.load import validate_file
from leadscoring.ingest.schema import BadRows, check_bad_share
from leadscoring.run import QUICK_PARAMETERS, RunFailed
from leadscoring.termination import Terminated, Termination
from leadscoring.training.rules import RulesError

USER_ERRORS = (ConfigError, LeadDataError, OutputPathError, ModelIntegrityError, RunFailed, RulesError, FileNotFoundError)


def _parse_set(items: Sequence[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects NAME=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)  # typed: 1500 -> int, true -> bool, [a, b] -> list
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({yaml_problem(exc)}); quote text") from None
    return out


def _progress(args: argparse.Namespace) -> bool:
    """The progress bars of ``run`` and ``score`` on stderr: unless ``--no-progress``, and only
    on a terminal (redirected to a log file, each bar's redraws would fill it). The one-line
    progress of ``push``, ``pull`` and ``cycle`` reads well in a log and stays."""
    return not args.no_progress and sys.stderr.isatty()


def _cmd_run(args: argparse.Namespace) -> int:
    from leadscoring.run import RunInterrupted, run_pipeline

    cfg = load_config(args.config)
    params = dict(QUICK_PARAMETERS) if args.quick else {}
    params.update(_parse_set(args.set))
    only = [o.strip() for o in args.only.split(",")] if args.only else None
    promote = not (args.quick or args.no_promote)  # a smoke run on a sample must never replace the models
    try:
        res = run_pipeline(cfg, params, only=only, progress=_progress(args), promote=promote)
    except RunInterrupted as exc:
        print(f"leadscoring run: interrupted: {exc}", file=sys.stderr)
        return 143
    print(f"run {res.run_id}: {res.status} in {res.seconds:.0f}s -> {res.run_dir}")
    for nb in res.notebooks:
        print(f"  {nb.name:<28} {nb.seconds:7.1f}s  {nb.status}")
    for line in res.headline():
        print(line)
    if res.promoted and only:  # a partial run: its notebooks' products, not a new latest/
        print(f"products promoted into the project; {res.run_dir} holds this run's notebooks (latest/ shows the last full run)")
    elif res.promoted:
        print(f"products promoted into the project; {res.run_dir.parent.parent / 'latest'} shows this run")
        if res.archived:
            print(f"previous models archived in {res.archived} (leadscoring rollback restores them)")
    else:
        why = "smoke run (--quick)" if args.quick else "trial run (--no-promote)"
        print(f"{why}: NOT promoted; products only in {res.products_dir}; the project's models, scores and latest/ are unchanged")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from leadscoring.serving.batch import rejected_path, score_file

    cfg = load_config(args.config)
    if args.engine == "dask":
        from leadscoring.serving.distributed import score_dask

        if args.bad_rows == "set_aside":
            raise ConfigError("--bad-rows set_aside: the dask engine refuses a file at its first bad row; use --engine local")
        if cfg.scoring.bad_rows == "set_aside" and args.bad_rows is None:
            print("note: the dask engine refuses a file at its first bad row (scoring.bad_rows: set_aside is the local engine's)")

        res = score_dask(
            cfg,
            args.input,
            args.output,
            models_dir=args.models_dir,
            scheduler=args.scheduler,
            workers=args.workers,
            reasons=not args.no_reasons,
            history=not args.no_history,
        )
        print(f"scored {res['leads']} leads from {res['partitions']} file(s) -> {res['output']}")
        _alert_leads(cfg, res["parts"])
        return 0
    with tempfile.TemporaryDirectory(prefix="leadscoring-inputs-") as tmp:
        inputs = None if args.no_history else Path(tmp) / "scores.inputs.parquet"  # the leads' inputs, for the history
        res = score_file(
            cfg,
            args.input,
            args.output,
            models_dir=args.models_dir,
            reasons=not args.no_reasons,
            chunk_rows=args.chunk_rows,
            progress=_progress(args),
            jobs=args.jobs,
            inputs_path=inputs,
            bad_rows=args.bad_rows,
        )
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(res["buckets"].items()))
        print(f"scored {res['leads']} leads -> {args.output} ({counts})")
        if res.get("rejected"):
            where = rejected_path(args.output)
            print(f"WARNING: {res['rejected']} row(s) set aside, not scored -> {where}; the first: {res['first_rejected']}")
        for gap in res.get("gaps", []):
            print(f"WARNING: {gap}")
        if inputs is not None:
            _append_history(cfg, args.output, inputs)
    _alert_leads(cfg, [Path(args.output)])
    return 0


def _alert_leads(cfg: ProjectConfig, scores: Sequence[str | Path]) -> None:
    """Alert the leads of the scores files just written (paths or object-storage URLs) that
    entered an alert level (``alerts:`` section; nothing without a webhook URL)."""
    import pandas as pd

    from leadscoring.serving.alerts import alert_levels, alert_scored_leads, read_alert_fields, webhook_url
    from leadscoring.serving.storage import fetch

    if webhook_url(cfg) is None or not scores:
        return
    with tempfile.TemporaryDirectory(prefix="leadscoring-alerts-") as tmp:  # a URL's part is read from a local copy
        fields = [read_alert_fields(cfg, fetch(str(p), Path(tmp))) for p in scores]
    sent = alert_scored_leads(cfg, pd.concat(fields, ignore_index=True))
    if sent.entered:
        print(f"alerts: {sent.text(alert_levels(cfg))}")


def _append_history(cfg: ProjectConfig, output: str, inputs: Path | None = None) -> None:
    """Append a local engine's scores to the score history (outputs without model version and
    time columns are skipped), with the leads' inputs from the ``inputs`` file the scoring
    wrote, as a job of their own: another ``score`` run appending the same leads in the same
    second is another job, kept beside this one."""
    from leadscoring.serving.history import append_scores_file, has_stamps, new_job_id

    if not has_stamps(output):
        logging.getLogger(__name__).debug("score history: %s has no model_version/scored_at; not appended", output)
        return
    found = inputs if inputs is not None and inputs.is_file() else None
    n = append_scores_file(cfg.path("score_history"), output, cfg.data.id_column, job_id=new_job_id(), inputs_file=found)
    print(f"score history: {n} rows appended to {cfg.path('score_history')}")


def _cmd_init(args: argparse.Namespace) -> int:
    from leadscoring.scaffold import init_project, summary

    dest, draft = init_project(
        args.folder,
        args.input,
        args.target,
        positive=args.positive,
        id_column=args.id,
        date=args.date,
        separator=args.separator,
        encoding=args.encoding,
    )
    print(summary(draft, dest))
    return 0


def _add_init_parser(sub: Any) -> None:
    i = sub.add_parser("init", help="create a project folder for a client's export, with a drafted configuration")
    i.add_argument("folder", help="the new project folder (must not exist)")
    i.add_argument("--input", required=True, help="the client's export (CSV)")
    i.add_argument("--target", required=True, help="the column saying whether the lead converted")
    i.add_argument("--positive", help="the target's value meaning 'converted' (default: inferred, e.g. 1, yes, True)")
    i.add_argument("--id", help="the lead id column (default: detected; none found: leads are numbered by row)")
    i.add_argument(
        "--date",
        help="the lead creation date column (default: inferred from the date columns' names and values; "
        "NONE: no date, a random validation split)",
    )
    i.add_argument("--separator", help="field separator (default: sniffed)")
    i.add_argument("--encoding", help="text encoding (default: sniffed: UTF-8 with or without BOM, UTF-16/UTF-32, or Latin-1)")
    i.set_defaults(func=_cmd_init)


def _cmd_validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)
    source = args.input or cfg.path("raw_data")
    bad = BadRows(limit=LISTED_BAD_ROWS)  # every row with a problem counted, not only the first; the first listed
    n = validate_file(source, cfg, require_target=not args.no_target, bad_rows=bad)
    if not bad:
        print(f"{source}: {n} leads, layout OK")
    else:
        print(bad_rows_report(source, n, bad, cfg, new_leads=args.no_target))
    rules_path = cfg.path("rules_table")
    if rules_path.is_file():  # marketing's points table must fit this export's configuration
        from leadscoring.training.rules import check_rules_against_config, load_rules

        check_rules_against_config(load_rules(rules_path), cfg, origin=rules_path.name)
        print(f"{rules_path.name}: points table OK")
    else:
        print(f"{rules_path.name}: no points table; notebook 05 will propose one from the data")
    return 1 if bad else 0


#: Rows with a problem that ``validate`` lists one by one (the rest are counted).
LISTED_BAD_ROWS = 20


def bad_rows_report(source: object, valid: int, bad: BadRows, cfg: ProjectConfig, new_leads: bool) -> str:
    """``validate``'s lines for a file with rows that fail: the count, each row's line and
    problem in file order (the first :data:`LISTED_BAD_ROWS`), and what happens to the file:
    a training export stops the run at its first problem; a file of new leads is refused or
    has its rows set aside, as ``scoring.bad_rows`` and ``max_bad_share`` say."""
    total = valid + len(bad)
    if not new_leads:
        fate = "the run reads the export whole and stops at its first problem: fix them first"
    elif cfg.scoring.bad_rows == "stop":
        fate = "score refuses the file (scoring.bad_rows: stop)"
    else:
        try:  # score's own rule for a file with too many bad rows
            check_bad_share(str(source), len(bad), total, cfg.scoring.max_bad_share, bad.first())
            fate = "score sets them aside (scoring.bad_rows: set_aside) and scores the rest"
        except LeadDataError:
            fate = f"more than scoring.max_bad_share ({cfg.scoring.max_bad_share:.1%}) or every row: score refuses the file"
    table = bad.table()
    lines = [f"{source}: {valid} leads OK, {len(bad)} row(s) with a problem ({len(bad) / max(total, 1):.1%}; {fate}):"]
    lines += [f"  {r.line}: {r.problem}" for r in table.head(LISTED_BAD_ROWS).itertuples()]
    if len(bad) > LISTED_BAD_ROWS:
        lines.append(f"  ... and {len(bad) - LISTED_BAD_ROWS} more")
    return "\n".join(lines)


def _cmd_events(args: argparse.Namespace) -> int:
    print(ingest_report(load_config(args.config), args.files))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from leadscoring.serving.service import serve

    serve(load_config(args.config), host=args.host, port=args.port, workers=args.workers)
    return 0


def _cmd_push(args: argparse.Namespace) -> int:
    from leadscoring.crm.push import PUSH_STATE_FILE, push_scores

    cfg = load_config(args.config)
    state_file = args.state_file
    if state_file is None and cfg.crm is not None:  # one push state per project, kept per CRM URL
        state_file = cfg.path("crm_state") / PUSH_STATE_FILE
    summary = push_scores(
        args.scores,
        args.crm_url,
        cfg.data.id_column,
        crm=cfg.crm,
        state_file=state_file,
        concurrency=args.concurrency,
        retries=args.retries,
        timeout=args.timeout,
        max_failures=args.max_failures,
        max_backoff=args.max_backoff,
        fields=cfg.scoring.crm_fields,
        progress=not args.no_progress,
        experiment=cfg.experiment,
    )
    print(summary)
    for lead, err in list(summary.failures.items())[:10]:
        print(f"  failed: lead {lead}: {err}")
    if summary.failed > 10:
        print(f"  ... and {summary.failed - 10} more")
    return 1 if summary.failed else 0


def _cmd_pull(args: argparse.Namespace) -> int:
    """``leadscoring pull``: the CRM's outcomes into the outcome history; one line on stderr and
    nothing written when the pull fails: exit 1 when the CRM failed, 2 for bad input (the
    configuration, a damaged outcome history or watermark, a status not in the status map)."""
    from leadscoring.crm.http import CrmError
    from leadscoring.crm.pull import pull_outcomes

    try:
        summary = pull_outcomes(load_config(args.config), dry_run=args.dry_run, progress=not args.no_progress)
    except CrmError as exc:
        print(f"leadscoring pull: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    print(summary)
    return 0


def _cmd_crm_check(args: argparse.Namespace) -> int:
    from leadscoring.crm import connector_for, json_client
    from leadscoring.crm.check import check_lead_push, check_status_values
    from leadscoring.crm.http import CrmError

    cfg = load_config(args.config)
    if cfg.crm is None:
        raise ConfigError("crm check: the configuration has no crm: section (kind, url, token_env ...)")
    if args.lead is not None and not args.scores:
        raise ConfigError("crm check --lead needs --scores FILE: the scores file holding that lead's scores to push")
    connector = connector_for(cfg.crm)
    try:
        with json_client(cfg.crm) as client:
            reports = [check_status_values(connector, client, cfg.crm.status_map, cfg.crm.unmapped)]
            if args.lead is not None:
                reports.append(
                    check_lead_push(
                        cfg.crm,
                        args.scores,
                        args.lead,
                        cfg.data.id_column,
                        cfg.scoring.crm_fields,
                        client,
                        experiment=cfg.experiment,
                    )
                )
    except CrmError as exc:
        print(f"leadscoring crm check: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    for report in reports:
        for line in report.lines:
            print(line)
    return 1 if any(r.problems for r in reports) else 0


def _add_crm_parser(sub: Any) -> None:
    crm = sub.add_parser("crm", help="the CRM of the crm: section: check that the configuration fits it")
    actions = crm.add_subparsers(dest="action", required=True)
    what = (
        "Compare the status map with the status values the CRM lists (where its API lists them): a map value the CRM "
        "does not have is a problem, a CRM value the map does not know is shown (a problem with crm.unmapped: fail). "
        "With --lead ID --scores FILE, also read that lead's score fields, push its scores from FILE exactly as "
        "`push` would, and read them back: a field absent or unchanged after a 2xx answer (an unknown custom "
        "field the CRM dropped) fails the check. The values written are the lead's own scores; the push state is "
        "not changed. Exit 1 on any problem."
    )
    c = actions.add_parser("check", help="check that the configuration fits the CRM (status map, custom fields)", description=what)
    c.add_argument("--lead", help="a lead id of the CRM to write and read back")
    c.add_argument("--scores", help="the scores file (as for push) holding that lead's scores")
    c.set_defaults(func=_cmd_crm_check)


def _cmd_retrain(args: argparse.Namespace) -> int:
    from leadscoring.loop.retrain import retrain

    result = retrain(load_config(args.config), args.outcomes, args.leads, tolerance=args.tolerance)
    print(result.summary())
    return 0


def _cmd_cycle(args: argparse.Namespace) -> int:
    """``leadscoring cycle``: pull, retrain when due, rescore, push, monitoring; one line per
    step as it ends. Exit 0 (done), 1 (a step failed), 75 (another cycle is running: nothing
    done), 143 (SIGTERM), 2 (a user error before the first step)."""
    from leadscoring.errors import LockHeld
    from leadscoring.loop.cycle import EXIT_LOCKED, EXIT_TERMINATED, CycleInterrupted, run_cycle
    from leadscoring.tracking import run_log_path

    cfg = load_config(args.config)
    try:
        result = run_cycle(
            cfg, args.leads, dry_run=args.dry_run, progress=not args.no_progress, on_step=lambda s: print(s.line(), flush=True)
        )
    except LockHeld as exc:
        print(f"leadscoring cycle: another cycle is running, nothing done ({exc})", file=sys.stderr)
        return EXIT_LOCKED
    except CycleInterrupted as exc:
        print(f"leadscoring cycle: interrupted: {exc}", file=sys.stderr)
        return EXIT_TERMINATED
    print(
        f"cycle {result.cycle_id}: {result.status} in {result.seconds:.0f}s"
        + ("" if args.dry_run else f" (run log: {run_log_path(cfg)})")
    )
    return result.exit_code


def _add_cycle_parser(sub: Any) -> None:
    what = (
        "The nightly loop: pull the CRM's outcomes, retrain when due (loop: section) and promote the challenger by "
        "the stated rule, rescore the open leads whose inputs or models changed, push the changed scores, and "
        "write the monitoring report; one line per step in 01_Documentos/run_log.jsonl. Exit codes: 0 done, 1 a step "
        "failed, 2 a user error before the first step, 75 another cycle is running (nothing done), 143 terminated."
    )
    c = sub.add_parser("cycle", help="the nightly loop: pull, retrain when due, rescore, push, monitoring", description=what)
    c.add_argument("--leads", required=True, help="the client's nightly export of open leads (raw layout, CSV or parquet)")
    c.add_argument("--dry-run", action="store_true", help="say what each step would do; write nothing")
    c.add_argument("--no-progress", action="store_true", help="hide the pull's and push's progress on stderr")
    c.set_defaults(func=_cmd_cycle)


def _cmd_monitor(args: argparse.Namespace) -> int:
    """``leadscoring monitor``: write the monitoring report; one line, then one per alert."""
    import pandas as pd

    from leadscoring.loop.monitoring import build_monitoring, write_monitoring

    cfg = load_config(args.config)
    now = None
    if args.now is not None:
        try:
            now = pd.Timestamp(args.now)
        except ValueError:
            raise ConfigError(f"--now: {args.now!r} is not an ISO 8601 date and time, e.g. 2025-07-07T00:00:00Z") from None
    report = build_monitoring(cfg, cohort=args.cohort, now=now)
    as_of = None if now is None else (now.tz_convert("UTC") if now.tzinfo else now).strftime("%Y%m%dT%H%M%SZ")
    page, data = write_monitoring(cfg, report=report, as_of=as_of)
    print(f"monitoring: {len(report.cohorts)} {report.cohort}ly cohort(s), {len(report.alerts)} alert(s) -> {page}, {data}")
    for alert in report.alerts:
        print(f"  alert: {alert.message}")
    for note in report.notes:
        print(f"  note: {note}")
    if as_of is not None:  # a report as of another time: its alerts are not today's news
        if report.alerts:
            print("alerts: not sent to the webhook (a report as of --now)")
        return 0
    from leadscoring.serving.alerts import send_monitoring_alerts

    sent = send_monitoring_alerts(cfg, report)
    if sent:
        print(f"alerts: {sent} monitoring alert(s) sent to the webhook")
    return 0


def _add_monitor_parser(sub: Any) -> None:
    what = (
        "How past scores fared once their outcomes came back, per cohort of first scoring: conversion per grade and "
        "bucket, expected against observed conversions, ROC-AUC, drift (PSI) of the score and the inputs, the A/B test "
        "(with an experiment group in the score history), and alerts; written to 05_Resultados/monitoring.html and "
        "monitoring.json (monitoring: section of the configuration)."
    )
    m = sub.add_parser("monitor", help="the monitoring report: is the scoring working?", description=what)
    m.add_argument(
        "--cohort", choices=("week", "month"), help="group leads by week or month of first scoring (default monitoring.cohort)"
    )
    m.add_argument(
        "--now",
        help="the report as of this time (ISO 8601; default now): later scorings and outcomes are not seen; written to "
        "monitoring_as_of_TIME.html/.json, its alerts not sent",
    )
    m.set_defaults(func=_cmd_monitor)


def _cmd_rollback(args: argparse.Namespace) -> int:
    from leadscoring.loop.versions import describe_versions, rollback

    cfg = load_config(args.config)
    if args.list:
        rows = describe_versions(cfg)
        if not rows:
            print("no archived model versions")
        for row in rows:
            mark = "  (current)" if row["current"] else ""
            print(f"{row['version']}  {', '.join(row['models'])}{mark}")
        return 0
    print(rollback(cfg, args.version).summary())
    return 0


def _add_run_parser(sub: Any) -> None:
    r = sub.add_parser("run", help="execute the numbered notebooks with papermill (the production run)")
    r.add_argument(
        "--quick",
        action="store_true",
        help=f"small smoke-test run ({QUICK_PARAMETERS}); never promoted: products stay in the run folder",
    )
    r.add_argument(
        "--no-promote",
        action="store_true",
        help="trial run: keep the products in 05_Resultados/runs/<id>/products/, change nothing in the project",
    )
    r.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="notebook parameter (YAML-typed), repeatable; unknown names are refused",
    )
    r.add_argument("--only", help="comma-separated notebook prefixes, e.g. 01,02 (default: all)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.set_defaults(func=_cmd_run)


def _positive_int(text: str) -> int:
    """A whole number of at least 1 (argparse type: anything else is a usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_score_parser(sub: Any) -> None:
    s = sub.add_parser("score", help="score leads in the raw layout and write one row per lead")
    s.add_argument("--input", required=True, help="CSV (configured separator) or parquet of leads")
    s.add_argument("--output", required=True, help="output CSV (or .parquet)")
    s.add_argument("--models-dir", help="folder with the model + manifest (default: 04_Modelos)")
    s.add_argument(
        "--no-reasons",
        "--no-factors",
        dest="no_reasons",
        action="store_true",
        help="leave out reasons, fit and engagement scores (they come from the per-lead contributions: faster for bulk runs)",
    )
    s.add_argument("--chunk-rows", type=_positive_int, help="leads per chunk (at least 1; default 100000): bounds memory")
    s.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="worker processes for the local engine (default 1: on the 2-core reference machine "
        "the fastest and least memory, see bench/bench_batch.py)",
    )
    s.add_argument(
        "--bad-rows",
        choices=["stop", "set_aside"],
        help="a row that fails validation: stop (refuse the file, write nothing) or set_aside (score the others, write "
        "it to OUTPUT.rejected.csv with its line and problem); default scoring.bad_rows. Local engine only",
    )
    s.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    s.add_argument("--no-history", action="store_true", help="do not append the scores to the score history (paths.score_history)")
    s.add_argument(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="dask: one task per file of a path, URL or glob (s3://, gs://, abfs:// with the matching "
        "extra); the output is a folder of parts (a path or URL) with _SUCCESS",
    )
    s.add_argument("--scheduler", help="dask: address of an existing cluster (default: a local cluster)")
    s.add_argument("--workers", type=int, default=2, help="dask: workers of the local cluster")
    s.set_defaults(func=_cmd_score)


def _port(text: str) -> int:
    """A TCP port number, 1 to 65535 (argparse type: anything else is a usage error)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {port}")
    return port


def _add_serve_parser(sub: Any) -> None:
    sv = sub.add_parser("serve", help="HTTP scoring service (FastAPI; docs at /docs)")
    sv.add_argument("--host", default="127.0.0.1")
    sv.add_argument("--port", type=_port, default=8000, help="TCP port, 1-65535 (default 8000)")
    sv.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes, each scoring with one thread (about one per core)"
    )
    sv.set_defaults(func=_cmd_serve)


def _add_push_parser(sub: Any) -> None:
    pu = sub.add_parser(
        "push",
        help="write scores to the CRM of the crm: section (its connector and credentials), or with --crm-url alone "
        "PATCH URL/leads/ID (bearer token in LEADSCORING_CRM_TOKEN when set)",
    )
    pu.add_argument("--scores", required=True, help="scores CSV written by `score` or notebook 10")
    pu.add_argument("--crm-url", help="the CRM's base URL (in place of crm.url; required without a crm: section)")
    pu.add_argument(
        "--state-file",
        help="what each CRM accepted (default: paths.crm_state/push-state.jsonl with a crm: section, "
        "else SCORES.push-state.jsonl beside the scores)",
    )
    pu.add_argument("--concurrency", type=int, default=8)
    pu.add_argument("--retries", type=int, default=5)
    pu.add_argument("--timeout", type=float, default=10.0, help="seconds per request, answer included (default 10)")
    pu.add_argument(
        "--max-failures",
        type=int,
        default=5,
        help="stop after N consecutive connection failures, timeouts, rate-limit pauses or answers that are not the CRM's; "
        "the leads not sent are reported as failed (default 5, 0: never stop)",
    )
    pu.add_argument(
        "--max-backoff",
        type=float,
        default=30.0,
        help="longest wait between two attempts, in seconds; a CRM asking to wait longer (Retry-After) stops the push (default 30)",
    )
    pu.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    pu.set_defaults(func=_cmd_push)


def _add_pull_parser(sub: Any) -> None:
    pl = sub.add_parser(
        "pull",
        help="read the CRM's lead statuses changed since the last pull into the outcome history "
        "(paths.outcome_history; the crm: section says which CRM and how statuses map to converted / lost / open)",
    )
    pl.add_argument("--dry-run", action="store_true", help="read and map the changes and report them; write nothing")
    pl.add_argument("--no-progress", action="store_true", help="hide the count of leads read")
    pl.set_defaults(func=_cmd_pull)


def _add_retrain_parser(sub: Any) -> None:
    rt = sub.add_parser(
        "retrain", help="merge new outcomes, retrain, promote the challenger if not worse (the current model set is archived first)"
    )
    rt.add_argument(
        "--outcomes",
        help="CSV with id and target (or full lead rows); default: the outcome history pulled from the CRM "
        "(paths.outcome_history: converted and lost leads, open ones skipped), each lead with the inputs it was "
        "scored with (the score history; loop.train_on_inputs: first or last_before_outcome)",
    )
    rt.add_argument(
        "--leads",
        help="the leads' features (raw layout): with --outcomes of only id and target; without --outcomes, only "
        "for leads scored before inputs were recorded (a warning says how many)",
    )
    rt.add_argument(
        "--tolerance", type=float, help="allowed AUC drop / Brier rise (default loop.tolerance: 0.005 unless configured)"
    )
    rt.set_defaults(func=_cmd_retrain)


def _add_rollback_parser(sub: Any) -> None:
    rb = sub.add_parser("rollback", help="restore an archived model set (default: the newest that is not the current one)")
    rb.add_argument("--version", help="version folder name, as printed by --list")
    rb.add_argument("--list", action="store_true", help="list archived versions and the models each holds")
    rb.set_defaults(func=_cmd_rollback)


def _cmd_history(args: argparse.Namespace) -> int:
    from leadscoring.serving.history import compact, history_folder

    history = load_config(args.config).path("score_history")
    done = compact(history)
    if done.written is None:
        print(f"score history {history_folder(history)}: nothing to compact")
    else:
        print(f"score history: {done.files} file(s) compacted into {done.written} ({done.rows} rows)")
    return 0


def _add_history_parser(sub: Any) -> None:
    h = sub.add_parser("history", help="maintain the score history (paths.score_history)")
    actions = h.add_subparsers(dest="action", required=True)
    c = actions.add_parser(
        "compact", help="merge the score history's parts into one file (safe while scorings append; run it now and then)"
    )
    c.set_defaults(func=_cmd_history)


def _add_validate_parser(sub: Any) -> None:
    v = sub.add_parser("validate", help="check an export against the configuration")
    v.add_argument("--input", help="the export to check (default: the configuration's paths.raw_data)")
    v.add_argument("--no-target", action="store_true", help="the file has no target column (leads to score)")
    v.set_defaults(func=_cmd_validate)


def _add_events_parser(sub: Any) -> None:
    events = sub.add_parser("events", help="behavioural events: add daily export files to the event store")
    ing = events.add_subparsers(dest="action", required=True).add_parser(
        "ingest",
        help="add daily export files to the event store (events.store); a day ingested again replaces "
        "that day's file, never duplicates it",
    )
    ing.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="GA4 events_YYYYMMDD.json[.gz] or .parquet files, or a flat activity log (CSV or parquet)",
    )
    ing.set_defaults(func=_cmd_events)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="leadscoring", description="Predictive lead scoring from a CRM export.")
    p.add_argument("--config", help="configuration YAML (default: 01_Documentos/config.yaml here or above)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = p.add_subparsers(dest="command", required=True)
    # The order of the subcommands is the order of `leadscoring --help`.
    for add in (
        _add_init_parser,
        _add_run_parser,
        _add_score_parser,
        _add_serve_parser,
        _add_push_parser,
        _add_pull_parser,
        _add_crm_parser,
        _add_retrain_parser,
        _add_cycle_parser,
        _add_monitor_parser,
        _add_rollback_parser,
        _add_history_parser,
        _add_validate_parser,
        _add_events_parser,
    ):
        add(sub)
    return p


def _os_error(exc: OSError, args: argparse.Namespace) -> str:
    """One line for an operating-system error: the file it concerns (for a full disk the error
    does not name, the command's output), then the reason."""
    reason = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    path = exc.filename
    if is_disk_full(exc):
        path = path or getattr(args, "output", None)
        reason = f"not written, the disk is full ({reason})"
    return f"{path}: {reason}" if path else reason


#: Optional packages -> the extra of pyproject.toml that brings them.
EXTRAS = {
    "fastapi": "serve",
    "uvicorn": "serve",
    "httpx": "serve",
    "dask": "dask",
    "distributed": "dask",
    "fsspec": "dask",
    "s3fs": "s3",
    "gcsfs": "gcs",
    "adlfs": "azure",
    "sqlglot": "bigquery",
    "google": "bigquery",
}


def _missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The extra that brings the package ``exc`` did not find, if it is an optional one."""
    return EXTRAS.get((exc.name or "").split(".")[0])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        with Termination():  # SIGTERM (timeout, systemctl stop) ends a command as Ctrl-C does: cleaned up, one line
            return int(args.func(args))
    except USER_ERRORS as exc:
        print(f"leadscoring {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk or a folder that is not writable
        print(f"leadscoring {args.command}: error: {_os_error(exc, args)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        extra = _missing_extra(exc)
        if extra is None:
            raise
        print(
            f"leadscoring {args.command}: error: needs the optional package {exc.name}, which the '{extra}' extra "
            f"installs: pip install 'leadscoring[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except Terminated as exc:
        print(f"leadscoring {args.command}: interrupted: {exc}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
