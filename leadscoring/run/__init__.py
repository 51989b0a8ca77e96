"""The production run: the numbered notebooks executed in order with papermill, each run in
its own folder, and run promotion (the run's products copied into the project) only when
every notebook succeeded.

The public API is imported from here; the modules behind it are :mod:`~leadscoring.run.runner`
(the steps in order), :mod:`~leadscoring.run.kernel` (the Jupyter kernel, executing and
rendering one notebook), :mod:`~leadscoring.run.staging` (the staging folder and the copies
run promotion makes) and :mod:`~leadscoring.run.termination` (SIGTERM during a run).
"""

from leadscoring.run.kernel import kernel_config
from leadscoring.run.runner import (
    QUICK_PARAMETERS,
    RESERVED_PARAMETERS,
    RUNNER_PARAMETERS,
    NotebookResult,
    RunFailed,
    RunResult,
    declared_parameters,
    list_notebooks,
    run_pipeline,
)
from leadscoring.run.termination import RunInterrupted

__all__ = [
    "QUICK_PARAMETERS",
    "RESERVED_PARAMETERS",
    "RUNNER_PARAMETERS",
    "NotebookResult",
    "RunFailed",
    "RunInterrupted",
    "RunResult",
    "declared_parameters",
    "kernel_config",
    "list_notebooks",
    "run_pipeline",
]
