"""What the numbered notebooks import: their set-up helpers (:mod:`~leadscoring.notebook.project`)
and plots (:mod:`~leadscoring.notebook.plots`). The production run that executes them is
:mod:`leadscoring.run`; ``leadscoring init`` is :mod:`leadscoring.scaffold`.
"""
