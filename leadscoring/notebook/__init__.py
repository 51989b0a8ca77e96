"""Support for the ten numbered notebooks: their set-up helpers and plots, and the
production run that executes them with papermill.
"""
