"""Shared fixtures. Tests use small data they make themselves and never touch the network."""

import pytest
import torch

CPU = torch.device("cpu")


@pytest.fixture
def cpu() -> torch.device:
    return CPU


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches():
    """Each test starts with empty Streamlit caches (results and datasets)."""
    yield
    try:
        import streamlit as st
    except ImportError:
        return
    st.cache_data.clear()
    st.cache_resource.clear()
