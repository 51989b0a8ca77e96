"""Reading a client's export and checking it: the one reader, the schema built from the
configuration, data quality, and the validation split. Knows nothing of models.
"""
