"""Closing the loop: writing scores into the CRM, retraining on new outcomes with a
champion/challenger check, model versions and rollback, drift monitoring.
"""
