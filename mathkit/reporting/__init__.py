"""Reporting: charts, before/after tables, results.json, provenance and the report index."""
