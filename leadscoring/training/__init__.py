"""Building, comparing, explaining and evaluating models: the one pipeline from raw
columns to probability, cross-validated choices, rules, segments, the model card.
"""
