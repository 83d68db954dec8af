"""Convergence Clinic's core: the cases, the shared training loop, the CLI.

Importable without Streamlit. Importing `core` itself is cheap; `core.registry` brings
in torch and every case. `core.ui` is the one module that talks to Streamlit.
"""
