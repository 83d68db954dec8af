"""Standalone reproduction scripts, one per case, exported with the run's settings.

Each file here is a complete program that needs only torch and numpy: nothing from this
project. `core.export.script(case, config)` fills in its settings block; the tests run
every script and compare its printed metrics with the app's own result.
"""
