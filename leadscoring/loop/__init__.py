"""Closing the loop: retraining on new outcomes with a champion/challenger check, model
versions and rollback, drift monitoring (scores reach the CRM through :mod:`leadscoring.crm`).
"""
