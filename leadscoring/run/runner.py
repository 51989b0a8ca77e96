"""The production run: execute the numbered notebooks in order with papermill.

Each run gets ``05_Resultados/runs/<run id>/`` holding the executed notebooks, their HTML
renderings, the notebooks as given to papermill when they have an analyst's notes cell
(``input/``: the source with the project's note filled in from ``paths.analyst_notes``, read
once at the start of the run; the source notebook is never changed) and a staging folder
``products/`` where the notebooks write everything they produce (models, data splits,
tables, figures, scores). Only when every notebook has succeeded and declared products
exist does run promotion copy the products into the project (file by file, atomically) and
replace ``05_Resultados/latest/``; a run bringing a new model
set replaces the current one through :func:`leadscoring.artifacts.replace_model_set`, which
archives it under ``04_Modelos/versions/`` first so ``rollback`` can restore it.

A trial run (``promote=False``; ``leadscoring run --quick`` or ``--no-promote``) never
touches the project: its products stay in its own ``products/`` folder.

A failing run stops at the failing notebook, says which one and why, removes its staging
folder (the executed notebooks stay, for debugging) and leaves the previous products
intact. A run terminated by SIGTERM does the same and is logged as "interrupted".

The kernel and notebook execution live in :mod:`~leadscoring.run.kernel`, the staging
folder and the copies run promotion makes in :mod:`~leadscoring.run.staging`, SIGTERM
handling in :mod:`~leadscoring.run.termination`; this module runs the steps in order.

"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadscoring.artifacts import MODEL_CARD, replace_model_set
from leadscoring.config import ProjectConfig, read_analyst_notes
from leadscoring.io import append_json_line
from leadscoring.run.index import write_index
from leadscoring.run.kernel import (
    ensure_kernel,
    error_line,
    execute_notebook,
    render_html,
    self_contained_env,
    with_analyst_notes,
)
from leadscoring.run.staging import copy_products, new_models, product_path, replace_dir, seed_staging
from leadscoring.run.termination import RunInterrupted, Termination
from leadscoring.serving.history import append_run_scores
from leadscoring.tracking import run_log_path, update_tracking

log = logging.getLogger(__name__)


#: Below this validation ROC-AUC a run warns that its model ranks leads little better than chance.
CHANCE_AUC = 0.6

#: Parameters the runner passes to every notebook that declares them.
RUNNER_PARAMETERS = ("config_path", "output_root")


#: Parameters a caller may not set: the runner's own, and the notebooks' declared products
#: (overriding them would disable the product check or write outside the staging folder).
RESERVED_PARAMETERS = (*RUNNER_PARAMETERS, "products")


#: A smoke run on a sample; it is never promoted (``leadscoring run --quick``).
QUICK_PARAMETERS: dict[str, Any] = {"sample_size": 1500, "fast": True}


class RunFailed(RuntimeError):
    """A notebook failed or did not write its declared products."""


@dataclass
class NotebookResult:
    name: str
    seconds: float
    status: str
    error: str = ""


@dataclass
class RunResult:
    run_id: str
    run_dir: Path
    status: str
    notebooks: list[NotebookResult] = field(default_factory=list)
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    promoted: bool = False
    archived: Path | None = None
    history_rows: int | None = None  # scores appended to the score history by the promotion
    trial: bool = False  # a trial or smoke run (promote=False): never promoted
    only: list[str] | None = None  # the notebooks of a partial run

    def headline(self) -> list[str]:
        """What the run measured, for the person who started it (from notebook 07's
        ``run_metrics.json``): the scoring model's validation ROC-AUC; the fields the leakage
        audit kept out and what they would have read; and a warning when the model ranks leads
        little better than chance, naming those fields when they hold the signal (an honest
        field kept out by mistake goes in ``data.allow_leaky``); the run's other warnings
        (``warnings``: probabilities off on the validation leads, grades and buckets that disagree)."""
        m = self.metrics
        auc = m.get("validation_roc_auc")
        if auc is None:
            return []
        cv = f", cross-validation {m['cv_roc_auc']:.3f}" if m.get("cv_roc_auc") is not None else ""
        honest = m.get("validation_roc_auc_without_allowed")
        without = f"; {honest:.3f} without the post-contact fields the configuration lets in" if honest is not None else ""
        lines = [f"scoring model ({m.get('model_family', 'model')}): validation ROC-AUC {auc:.3f}{cv} (0.5 = chance){without}"]
        with_out, kept_out = m.get("validation_roc_auc_with_excluded"), m.get("kept_out_by_audit") or []
        names_them = auc < CHANCE_AUC and with_out is not None and with_out - auc >= 0.1  # the warning below does
        if kept_out and not names_them:
            review = [v for v in m.get("kept_out_for_review") or [] if v in kept_out]
            shown = [v for v in kept_out if v not in review]
            would = f" (with them the same recipe would read {with_out:.3f})" if with_out is not None else ""
            parts = [f"as known only after the sales contact: {', '.join(shown)}"] if shown else []
            if review:  # weak evidence only (a name): not shown to be post-contact
                parts.append(f"until confirmed as known before the sales contact (data.allow_leaky): {', '.join(review)}")
            lines.append(
                f"kept out by the leakage audit {'; '.join(parts)}{would}; "
                "its evidence: 05_Resultados/leakage_audit.csv and the model card"
            )
        lines += [f"WARNING: {w}" for w in m.get("warnings", [])]
        if auc < CHANCE_AUC:
            warning = f"WARNING: the model ranks leads little better than chance (validation ROC-AUC {auc:.3f})"
            if with_out is not None and kept_out and with_out - auc >= 0.1:
                warning += (
                    f"; with the fields the leakage audit kept out ({', '.join(kept_out)}) it would read {with_out:.3f}. "
                    "If they are known before the sales contact, list them under data.allow_leaky "
                    "(their evidence: 05_Resultados/leakage_audit.csv and the model card)"
                )
            lines.append(warning)
        return lines

    @property
    def products_dir(self) -> Path:
        """The run's staging folder (kept after a successful run, removed after a failure)."""
        return self.run_dir / "products"


def list_notebooks(cfg: ProjectConfig, only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks (``NN_name.ipynb``) in order; ``only`` filters by prefix or stem."""
    nbs = sorted(p for p in cfg.path("notebooks_dir").glob("[0-9][0-9]_*.ipynb"))
    if not nbs:
        raise RunFailed(f"no numbered notebooks found in {cfg.path('notebooks_dir')}")
    if only:
        chosen = [p for p in nbs if any(p.stem == o or p.stem.startswith(f"{o}_") for o in only)]
        missing = [o for o in only if not any(p.stem == o or p.stem.startswith(f"{o}_") for p in nbs)]
        if missing:
            raise RunFailed(f"no notebook matches {missing}; have {[p.stem for p in nbs]}")
        return chosen
    return nbs


def declared_parameters(notebook: Path) -> dict[str, Any]:
    """Parameters declared in the notebook's ``parameters`` cell, with their default values."""
    import papermill as pm

    params = pm.inspect_notebook(str(notebook))
    out = {}
    for name, info in params.items():
        try:
            out[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            out[name] = info["default"]
    return out


def _append_log(cfg: ProjectConfig, result: RunResult) -> None:
    line = {
        "run_id": result.run_id,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "status": result.status,
        **({"trial": True} if result.trial else {}),
        **({"only": result.only} if result.only else {}),
        "seconds": round(result.seconds, 1),
        "promoted": result.promoted,
        **({"archived": str(result.archived)} if result.archived else {}),
        "notebooks": {
            n.name: {"seconds": round(n.seconds, 1), "status": n.status, **({"error": n.error} if n.error else {})}
            for n in result.notebooks
        },
        "metrics": result.metrics,
        **({"history_rows": result.history_rows} if result.history_rows is not None else {}),
    }
    append_json_line(line, run_log_path(cfg))


def _check_parameters(parameters: dict[str, Any], declared: dict[Path, dict[str, Any]]) -> None:
    reserved = sorted(set(parameters) & set(RESERVED_PARAMETERS))
    if reserved:
        raise RunFailed(f"parameter(s) {reserved} cannot be set: {', '.join(RESERVED_PARAMETERS)} are reserved for the runner")
    known = set().union(*[set(d) for d in declared.values()])
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise RunFailed(f"unknown parameter(s) {unknown}; the notebooks declare {sorted(known - set(RESERVED_PARAMETERS))}")


def _make_run_dir(cfg: ProjectConfig, run_id: str) -> Path:
    """Create ``runs/<run id>/`` with its ``notebooks/``, ``html/`` and ``products/`` folders."""
    results = cfg.root / cfg.paths.results_dir
    run_dir = results / "runs" / run_id
    staging = run_dir / "products"
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (run_dir / "html").mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    return run_dir


def _notebook_parameters(cfg: ProjectConfig, staging: Path, parameters: dict[str, Any], declared: dict[str, Any]) -> dict[str, Any]:
    """The runner's parameters and the caller's, those the notebook declares."""
    nb_params = {"config_path": str(cfg.source), "output_root": str(staging)}
    nb_params.update(parameters)
    return {k: v for k, v in nb_params.items() if k in declared}


def _run_notebook(
    cfg: ProjectConfig,
    nb: Path,
    nb_params: dict[str, Any],
    declared: dict[str, Any],
    notes: dict[str, str],
    run_dir: Path,
    result: RunResult,
    progress: bool,
    report: bool,
    renderer: ThreadPoolExecutor,
) -> Future[None]:
    """Fill in the notebook's analyst's note, execute it and check its declared products; its
    outcome goes to ``result``. Its HTML rendering goes to ``renderer`` (while the next notebook
    runs): the returned future."""
    staging = run_dir / "products"
    executed = run_dir / "notebooks" / nb.name
    log.info("running %s", nb.name)
    t0 = time.perf_counter()
    try:
        source = with_analyst_notes(cfg, nb, run_dir / "input" / nb.name, notes)
        execute_notebook(cfg, source, executed, nb_params, progress, cwd=nb.parent)
    except RunInterrupted:
        result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "interrupted"))
        raise
    except Exception as exc:  # papermill/nbclient raise several types (incl. DeadKernelError)
        result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "failed", error_line(exc)))
        raise RunFailed(f"notebook {nb.name} failed: {error_line(exc)} (executed copy: {executed})") from None
    missing = [p for p in declared.get("products", []) if not product_path(cfg, staging, p).exists()]
    if missing:
        result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "failed", f"missing {missing}"))
        raise RunFailed(f"notebook {nb.name} ran but did not write its product(s) {missing}")
    result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "ok"))
    return renderer.submit(render_html, executed, run_dir / "html" / f"{nb.stem}.html", no_input=report)


def _run_notebooks(
    cfg: ProjectConfig,
    notebooks: list[Path],
    parameters: dict[str, Any],
    declared: dict[Path, dict[str, Any]],
    notes: dict[str, str],
    result: RunResult,
    progress: bool,
    seed: bool,
) -> None:
    """Prepare the environment and kernel, execute every notebook (``notes``: the analyst's
    notes by notebook number), read the run's metrics."""
    staging = result.products_dir
    reports = set(cfg.run.report_notebooks)
    if seed:
        seed_staging(cfg, staging)
    self_contained_env(cfg)
    ensure_kernel(cfg.run.kernel_name)
    metrics_file = staging / cfg.paths.results_dir / "run_metrics.json"
    seeded = metrics_file.stat().st_mtime_ns if metrics_file.is_file() else None  # an earlier run's, copied in
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="render") as renderer:
        rendered = [
            _run_notebook(
                cfg,
                nb,
                _notebook_parameters(cfg, staging, parameters, declared[nb]),
                declared[nb],
                notes,
                result.run_dir,
                result,
                progress,
                report=nb.stem in reports,
                renderer=renderer,
            )
            for nb in notebooks
        ]
    for done in rendered:
        done.result()  # a rendering that failed fails the run
    if metrics_file.is_file() and metrics_file.stat().st_mtime_ns != seeded:  # written by this run's notebook 07
        result.metrics = json.loads(metrics_file.read_text(encoding="utf-8"))


def _finish_run(cfg: ProjectConfig, result: RunResult, t_run: float) -> None:
    """Time the run, drop half-written products unless it succeeded, log it and rewrite the
    tracking workbook (a trial or failed run only adds its row: the workbook describes what
    is in service)."""
    result.seconds = time.perf_counter() - t_run
    if result.status == "running":
        result.status = "failed"
    if result.status != "ok":  # keep the executed notebooks, drop half-written products
        shutil.rmtree(result.products_dir, ignore_errors=True)
        shutil.rmtree(result.run_dir / ".latest", ignore_errors=True)
    _append_log(cfg, result)
    update_tracking(cfg)


def run_pipeline(
    cfg: ProjectConfig,
    parameters: dict[str, Any] | None = None,
    *,
    only: list[str] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    promote: bool = True,
) -> RunResult:
    """Execute the notebooks (all, or ``only``) and, if ``promote``, promote the run: copy its
    products into the project.

    A partial run (``only``) starts from the project's current products, so e.g. ``only=["10"]``
    re-scores with the models already in ``04_Modelos``. With ``promote=False`` (a trial or
    smoke run) nothing in the project changes: the products stay in ``result.products_dir``
    and ``05_Resultados/latest/`` keeps showing the last promoted run. A run promotion bringing
    a new model set archives the current one first (all models, their manifests and the model card).
    """
    if cfg.source is None:
        raise RunFailed("the configuration must come from a file (load_config) to be passed to notebooks")
    parameters = dict(parameters or {})
    notebooks = list_notebooks(cfg, only)
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    _check_parameters(parameters, declared)
    notes = read_analyst_notes(cfg)  # a bad notes file stops the run before it starts

    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = _make_run_dir(cfg, run_id)
    staging = run_dir / "products"
    staged_cfg = cfg.with_output_root(staging)

    result = RunResult(run_id=run_id, run_dir=run_dir, status="running", trial=not promote, only=list(only) if only else None)
    t_run = time.perf_counter()
    with Termination() as term:
        try:
            _run_notebooks(cfg, notebooks, parameters, declared, notes, result, progress, seed=bool(only))
            if promote:
                with term.deferred():  # once run promotion starts, it finishes
                    new_leads = parameters.get("input_path") is not None  # else the training export was scored
                    _promote_run(cfg, staged_cfg, staging, run_dir, result, latest=not only, new_leads=new_leads)
            result.status = "ok"
        except RunFailed:
            result.status = "failed"
            raise
        except RunInterrupted:
            result.status = "interrupted"
            raise
        finally:
            with term.deferred():
                _finish_run(cfg, result, t_run)
    if term.pending:
        raise RunInterrupted(
            f"SIGTERM received while run {run_id} was promoting; the promotion was completed first (logged as {result.status})"
        )
    return result


def _promote_run(
    cfg: ProjectConfig,
    staged_cfg: ProjectConfig,
    staging: Path,
    run_dir: Path,
    result: RunResult,
    latest: bool,
    new_leads: bool = True,
) -> None:
    """Run promotion: copy the staged products into the project (a new model set through
    :func:`~leadscoring.artifacts.replace_model_set`, which archives the current set first),
    (for a complete run) replace ``latest/`` (with its ``index.html``) and, when the run
    scored new leads (``new_leads``: an ``input_path``), append the promoted scores to the
    score history. The training export's leads (scored without one) all have their outcome:
    in the history they would count as leads scored today whose outcome never came back,
    and the monitoring report would raise false alarms about them."""
    models = cfg.path("models_dir")
    changed = new_models(models, staged_cfg.path("models_dir"))
    if changed:
        result.archived, copied = replace_model_set(
            models, lambda _archived: copy_products(staging, cfg.root), extra=[cfg.path("docs_dir") / MODEL_CARD]
        )
        if result.archived:
            log.info("new %s: archived the current set in %s", ", ".join(changed), result.archived)
    else:
        copied = copy_products(staging, cfg.root)
    result.promoted = True
    log.info("promoted %d products", len(copied))
    if latest:  # "latest" always shows one complete run
        results = cfg.root / cfg.paths.results_dir
        tmp_latest = run_dir / ".latest"
        shutil.rmtree(tmp_latest, ignore_errors=True)
        tmp_latest.mkdir()
        for sub in ("notebooks", "html"):
            shutil.copytree(run_dir / sub, tmp_latest / sub)
        (tmp_latest / "RUN_ID").write_text(result.run_id + "\n", encoding="utf-8")
        write_index(staged_cfg, result.run_id, tmp_latest, results)
        replace_dir(tmp_latest, results / "latest")
        shutil.rmtree(tmp_latest, ignore_errors=True)
    if not new_leads:
        log.info("score history: the run scored the training export (outcomes known): not appended")
        return
    result.history_rows = append_run_scores(cfg.path("score_history"), cfg.path("results_dir"), cfg.data.id_column)
