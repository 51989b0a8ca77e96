"""The notebooks' kernel and their execution: the Jupyter kernel (installed if missing, its
channel encrypted when pyzmq can), the analyst's notes filled into the notebook to execute,
one notebook executed with papermill, the executed copy rendered to HTML, and the one-line
error of a failed notebook."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from leadscoring.config import ProjectConfig
from leadscoring.config.notes import NOTES_TAG, note_cell_source

log = logging.getLogger(__name__)


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


#: Arguments of every notebook kernel. The kernel's own log (its messaging machinery, not
#: the cells: a cell's error reaches the run through the notebook) is kept to critical
#: problems. When a notebook has finished, jupyter_client interrupts the kernel before
#: shutting it down, and a kernel still finishing its last reply then logs "ERROR |
#: KeyboardInterrupt caught in kernel" on the run's terminal, under a run that succeeded.
KERNEL_ARGUMENTS = ("--IPKernelApp.log_level=CRITICAL",)


def with_analyst_notes(cfg: ProjectConfig, notebook: Path, dest: Path, notes: dict[str, str]) -> Path:
    """The notebook to execute: ``notebook`` itself when it has no markdown cell tagged
    ``analyst-notes``, else a copy written at ``dest`` whose tagged cells hold the notebook's
    note from ``notes`` (:func:`leadscoring.config.read_analyst_notes`), or the placeholder
    saying where to write it. Papermill never touches markdown cells, so the note is written
    before execution; the source notebook is left as it is."""
    import nbformat

    from leadscoring.io import write_text

    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if c.cell_type == "markdown" and NOTES_TAG in c.metadata.get("tags", [])]
    if not cells:
        return notebook
    for cell in cells:
        cell.source = note_cell_source(cfg, notebook.stem, notes)
    write_text(nbformat.writes(nb), dest)
    return dest


def execute_notebook(
    cfg: ProjectConfig,
    notebook: Path,
    executed: Path,
    parameters: dict[str, Any],
    progress: bool = True,
    cwd: Path | None = None,
) -> None:
    """Execute one notebook with papermill in the project's kernel, in ``cwd`` (default: the
    notebook's folder)."""
    import papermill as pm

    pm.execute_notebook(
        str(notebook),
        str(executed),
        parameters=parameters,
        kernel_name=cfg.run.kernel_name,
        cwd=str(cwd or notebook.parent),
        progress_bar=progress,
        execution_timeout=cfg.run.execution_timeout,
        start_timeout=cfg.run.start_timeout,
        request_save_on_cell_execute=False,
        config=kernel_config(),
        extra_arguments=list(KERNEL_ARGUMENTS),
    )


def self_contained_env(cfg: ProjectConfig) -> None:
    """Keep the kernels' caches (matplotlib, IPython) inside the project's ``.cache/`` unless
    the environment already names them, and silence the debugger's file-validation warning."""
    cache = cfg.root / ".cache"
    for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("IPYTHONDIR", "ipython")):
        os.environ.setdefault(var, str(cache / sub))
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def render_html(executed: Path, dest: Path, no_input: bool) -> None:
    """Render an executed notebook to HTML at ``dest``; ``no_input``: a report without code,
    prompts or log lines. Text a cell rewrote in place (a progress bar's carriage returns)
    shows as it last read, as in JupyterLab, not as every state it went through."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    from leadscoring.io import write_text

    logging.getLogger("traitlets").setLevel(logging.ERROR)  # "alternative text missing" on every figure
    exporter = HTMLExporter(exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input)
    nb = nbformat.read(executed, as_version=4)
    if no_input:  # a report: no code, no log lines (they stay in the executed notebook)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
    nb, _ = CoalesceStreamsPreprocessor().preprocess(nb, {})
    body, _ = exporter.from_notebook_node(nb)
    write_text(body, dest)


def error_line(exc: Exception) -> str:
    """One line (at most 500 characters) naming a failed notebook's error: its exception name
    and message as the kernel reported them."""
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    return f"{ename}: {evalue}".strip().splitlines()[0][:500]
