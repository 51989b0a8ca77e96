"""Closing the loop: retraining on new outcomes with a champion/challenger check, model
versions and rollback, and monitoring: past scores against their outcomes, drift and the A/B
test (scores reach the CRM through :mod:`leadscoring.crm`).
"""
