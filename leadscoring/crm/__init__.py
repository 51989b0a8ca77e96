"""The CRM, both ways: connectors for the CRMs clients use, pushing scores and pulling outcomes."""
