"""Reporting: the console and its tables, the run directory's files (RunDir), provenance, plots, loggers,
the end-of-run report, and the summary of a sweep."""
