"""The production run: execute the numbered notebooks in order with papermill.

Each run gets ``05_Resultados/runs/<run id>/`` holding the executed notebooks, their HTML
renderings and a staging folder ``products/`` where the notebooks write everything they
produce (models, data splits, tables, figures, scores). Only when every notebook has
succeeded and declared products exist are the products promoted into the project
(file by file, atomically) and ``05_Resultados/latest/`` replaced; before a new model set
is promoted, the current one is archived under ``04_Modelos/versions/`` (see
:func:`leadscoring.artifacts.archive_model_set`) so ``rollback`` can restore it.

A trial run (``promote=False``; ``leadscoring run --quick`` or ``--no-promote``) never
touches the project: its products stay in its own ``products/`` folder.

A failing run stops at the failing notebook, says which one and why, removes its staging
folder (the executed notebooks stay, for debugging) and leaves the previous products
intact. A run terminated by SIGTERM does the same and is logged as "interrupted".

"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadscoring.artifacts import MODEL_CARD, MODEL_SET, archive_model_set, sha256_file
from leadscoring.config import ProjectConfig

log = logging.getLogger(__name__)


#: Parameters the runner passes to every notebook that declares them.
RUNNER_PARAMETERS = ("config_path", "output_root")


#: Parameters a caller may not set: the runner's own, and the notebooks' declared products
#: (overriding them would disable the product check or write outside the staging folder).
RESERVED_PARAMETERS = (*RUNNER_PARAMETERS, "products")


#: A smoke run on a sample; it is never promoted (``leadscoring run --quick``).
QUICK_PARAMETERS: dict[str, Any] = {"sample_size": 1500, "fast": True}




class RunFailed(RuntimeError):
    """A notebook failed or did not write its declared products."""


class RunInterrupted(KeyboardInterrupt):
    """The run was terminated (SIGTERM). Derived from KeyboardInterrupt, like Ctrl-C, so no
    ``except Exception`` on the way (papermill, nbclient, the runner) mistakes it for a
    notebook error."""


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


def ensure_kernel(name: str) -> None:
    """Make sure the kernel ``name`` exists; install it for this interpreter if not."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        from ipykernel.kernelspec import install

        install(kernel_name=name, display_name=f"Python ({name})", prefix=sys.prefix)
        log.info("installed Jupyter kernel %r for %s", name, sys.executable)


def kernel_config() -> Any:
    """Configuration for the notebooks' kernel manager (passed through papermill to nbclient).

    A kernel started over plain TCP logs "Kernel is running over TCP without encryption"
    on its stderr, once per notebook, because its messages (code, outputs) travel
    unencrypted over localhost. That warning comes from the kernel process, so a
    ``warnings`` filter in the runner cannot silence it; instead, when pyzmq has CurveZMQ
    support, ask jupyter_client to provision per-kernel Curve keys (``transport_encryption
    = "auto"``: only for kernels whose spec declares ``supported_encryption: curve``, as
    ipykernel's does). The channel is then encrypted and the kernel has nothing to warn about.
    """
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return Config()
    return Config({"KernelManager": {"transport_encryption": "auto"}})


def execute_notebook(cfg: ProjectConfig, notebook: Path, executed: Path, parameters: dict[str, Any],
                     progress: bool = True) -> None:
    """Execute one notebook with papermill in the project's kernel (``cwd``: the notebook's folder)."""
    import papermill as pm

    pm.execute_notebook(
        str(notebook), str(executed), parameters=parameters, kernel_name=cfg.run.kernel_name,
        cwd=str(notebook.parent), progress_bar=progress, execution_timeout=cfg.run.execution_timeout,
        start_timeout=cfg.run.start_timeout, request_save_on_cell_execute=False, config=kernel_config(),
    )


class _Termination:
    """While active (main thread only), SIGTERM raises :class:`RunInterrupted` so the run can
    log itself and clean up; the previous handler is restored on exit. Inside ``deferred()``
    a SIGTERM is only recorded (``pending``): promotion and the run's own bookkeeping finish."""

    def __init__(self) -> None:
        self.previous: Any = None
        self.installed = False
        self.defer = False
        self.pending = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.defer:
            self.pending = True
            return
        raise RunInterrupted(f"terminated by {signal.Signals(signum).name}; nothing was promoted, the run is "
                             "logged as interrupted")

    def __enter__(self) -> _Termination:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._handle)
            self.installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous if self.previous is not None else signal.SIG_DFL)
            self.installed = False

    @contextmanager
    def deferred(self) -> Iterator[None]:
        was, self.defer = self.defer, True
        try:
            yield
        finally:
            self.defer = was


def _self_contained_env(cfg: ProjectConfig) -> None:
    cache = cfg.root / ".cache"
    for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("IPYTHONDIR", "ipython")):
        os.environ.setdefault(var, str(cache / sub))
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def _to_html(executed: Path, dest: Path, no_input: bool) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    from leadscoring.io import write_text

    logging.getLogger("traitlets").setLevel(logging.ERROR)  # "alternative text missing" on every figure
    exporter = HTMLExporter(exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input)
    nb = nbformat.read(executed, as_version=4)
    if no_input:  # a report: no code, no log lines (they stay in the executed notebook)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    body, _ = exporter.from_notebook_node(nb)
    write_text(body, dest)


def _error_of(exc: Exception) -> str:
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip().splitlines()[0][:500]


def _product_path(cfg: ProjectConfig, staging: Path, product: str) -> Path:
    """``models_dir/x.pkl`` → the staged path of ``x.pkl`` in the configured models folder."""
    key, _, rest = product.partition("/")
    if key in type(cfg.paths).model_fields:
        return staging / getattr(cfg.paths, key) / rest
    return staging / product


def _promote(staging: Path, root: Path) -> list[Path]:
    """Copy every staged product into the project, each file replaced atomically."""
    done = []
    for src in sorted(p for p in staging.rglob("*") if p.is_file()):
        dest = root / src.relative_to(staging)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.promote")
        shutil.copy2(src, tmp)
        os.replace(tmp, dest)
        done.append(dest)
    return done


def _seed_staging(cfg: ProjectConfig, staging: Path) -> None:
    """For a partial run (``--only``): start from the current products, so a notebook
    finds what earlier notebooks wrote in previous runs."""
    for key in ("validation_dir", "work_dir", "models_dir", "results_dir"):
        src = cfg.root / getattr(cfg.paths, key)
        if not src.is_dir():
            continue
        ignore = {"results_dir": shutil.ignore_patterns("runs", "latest"),
                  "models_dir": shutil.ignore_patterns("versions")}.get(key)  # archives stay where they are
        shutil.copytree(src, staging / getattr(cfg.paths, key), ignore=ignore, dirs_exist_ok=True)


def _new_models(current: Path, staged: Path) -> list[str]:
    """Model files of the set that the run staged and that differ from the project's."""
    return [n for n in MODEL_SET if (staged / n).is_file()
            and not ((current / n).is_file() and sha256_file(current / n) == sha256_file(staged / n))]


def _replace_dir(src: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.new")
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)


def _append_log(cfg: ProjectConfig, result: RunResult) -> None:
    line = {
        "run_id": result.run_id, "status": result.status, "seconds": round(result.seconds, 1),
        "promoted": result.promoted, **({"archived": str(result.archived)} if result.archived else {}),
        "notebooks": {n.name: {"seconds": round(n.seconds, 1), "status": n.status, **({"error": n.error} if n.error else {})}
                      for n in result.notebooks},
        "metrics": result.metrics,
    }
    path = cfg.path("docs_dir") / "run_log.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, default=str) + "\n")


def _check_parameters(parameters: dict[str, Any], declared: dict[Path, dict[str, Any]]) -> None:
    reserved = sorted(set(parameters) & set(RESERVED_PARAMETERS))
    if reserved:
        raise RunFailed(f"parameter(s) {reserved} cannot be set: {', '.join(RESERVED_PARAMETERS)} are reserved for the runner")
    known = set().union(*[set(d) for d in declared.values()])
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise RunFailed(f"unknown parameter(s) {unknown}; the notebooks declare {sorted(known - set(RESERVED_PARAMETERS))}")


def run_pipeline(
    cfg: ProjectConfig,
    parameters: dict[str, Any] | None = None,
    *,
    only: list[str] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    promote: bool = True,
) -> RunResult:
    """Execute the notebooks (all, or ``only``) and, if ``promote``, promote their products.

    A partial run (``only``) starts from the project's current products, so e.g. ``only=["10"]``
    re-scores with the models already in ``04_Modelos``. With ``promote=False`` (a trial or
    smoke run) nothing in the project changes: the products stay in ``result.products_dir``
    and ``05_Resultados/latest/`` keeps showing the last promoted run. Promoting a new model
    set archives the current one first (all models, their manifests and the model card).
    """
    if cfg.source is None:
        raise RunFailed("the configuration must come from a file (load_config) to be passed to notebooks")
    parameters = dict(parameters or {})
    notebooks = list_notebooks(cfg, only)
    declared = {nb: declared_parameters(nb) for nb in notebooks}
    _check_parameters(parameters, declared)

    run_id = run_id or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = cfg.root / cfg.paths.results_dir
    run_dir = results / "runs" / run_id
    staging = run_dir / "products"
    (run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    (run_dir / "html").mkdir(parents=True, exist_ok=True)
    staging.mkdir(parents=True, exist_ok=True)
    staged_cfg = cfg.with_output_root(staging)

    result = RunResult(run_id=run_id, run_dir=run_dir, status="running")
    t_run = time.perf_counter()
    reports = set(cfg.run.report_notebooks)
    with _Termination() as term:
        try:
            if only:
                _seed_staging(cfg, staging)
            _self_contained_env(cfg)
            ensure_kernel(cfg.run.kernel_name)
            for nb in notebooks:
                nb_params = {"config_path": str(cfg.source), "output_root": str(staging)}
                nb_params.update(parameters)
                nb_params = {k: v for k, v in nb_params.items() if k in declared[nb]}
                executed = run_dir / "notebooks" / nb.name
                log.info("running %s", nb.name)
                t0 = time.perf_counter()
                try:
                    execute_notebook(cfg, nb, executed, nb_params, progress)
                except RunInterrupted:
                    result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "interrupted"))
                    raise
                except Exception as exc:  # papermill/nbclient raise several types (incl. DeadKernelError)
                    result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "failed", _error_of(exc)))
                    raise RunFailed(f"notebook {nb.name} failed: {_error_of(exc)} (executed copy: {executed})") from None
                missing = [p for p in declared[nb].get("products", []) if not _product_path(cfg, staging, p).exists()]
                if missing:
                    result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "failed", f"missing {missing}"))
                    raise RunFailed(f"notebook {nb.name} ran but did not write its product(s) {missing}")
                _to_html(executed, run_dir / "html" / f"{nb.stem}.html", no_input=nb.stem in reports)
                result.notebooks.append(NotebookResult(nb.stem, time.perf_counter() - t0, "ok"))
            metrics_file = staging / cfg.paths.results_dir / "run_metrics.json"
            if metrics_file.is_file():
                result.metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
            if promote:
                with term.deferred():  # once promotion starts, it finishes
                    _promote_run(cfg, staged_cfg, staging, run_dir, result, latest=not only)
            result.status = "ok"
        except RunFailed:
            result.status = "failed"
            raise
        except RunInterrupted:
            result.status = "interrupted"
            raise
        finally:
            with term.deferred():
                result.seconds = time.perf_counter() - t_run
                if result.status == "running":
                    result.status = "failed"
                if result.status != "ok":  # keep the executed notebooks, drop half-written products
                    shutil.rmtree(staging, ignore_errors=True)
                    shutil.rmtree(run_dir / ".latest", ignore_errors=True)
                _append_log(cfg, result)
    if term.pending:
        raise RunInterrupted(f"SIGTERM received while run {run_id} was promoting; the promotion was completed "
                             f"first (logged as {result.status})")
    return result


def _promote_run(cfg: ProjectConfig, staged_cfg: ProjectConfig, staging: Path, run_dir: Path,
                 result: RunResult, latest: bool) -> None:
    """Archive the current model set if the run brings a new one, copy the staged products
    into the project and (for a complete run) replace ``latest/``."""
    models = cfg.path("models_dir")
    changed = _new_models(models, staged_cfg.path("models_dir"))
    if changed:
        result.archived = archive_model_set(models, extra=[cfg.path("docs_dir") / MODEL_CARD])
        if result.archived:
            log.info("new %s: archived the current set in %s", ", ".join(changed), result.archived)
    promoted = _promote(staging, cfg.root)
    result.promoted = True
    log.info("promoted %d products", len(promoted))
    if latest:  # "latest" always shows one complete run
        results = cfg.root / cfg.paths.results_dir
        tmp_latest = run_dir / ".latest"
        shutil.rmtree(tmp_latest, ignore_errors=True)
        tmp_latest.mkdir()
        for sub in ("notebooks", "html"):
            shutil.copytree(run_dir / sub, tmp_latest / sub)
        (tmp_latest / "RUN_ID").write_text(result.run_id + "\n", encoding="utf-8")
        _replace_dir(tmp_latest, results / "latest")
        shutil.rmtree(tmp_latest, ignore_errors=True)

