"""Cleaning, derived features and encoding: scikit-learn transformers that learn every
statistic in ``fit``, so one lead scored alone equals the same lead in a batch.
"""
