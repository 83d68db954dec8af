"""The cases, one folder each: `core/cases/<name>/__init__.py` defines `CASE` (core/case.py says
what a case is) and `core/registry.py` lists them in order."""
