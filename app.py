"""Convergence Clinic: the home page. Streamlit finds the four case pages in pages/."""

import streamlit as st

from core import registry, ui

ui.page("Convergence Clinic")
st.title("Convergence Clinic")
st.markdown(
    "Your PyTorch model will not train? Here are four real, well-known failures, as they were posted. "
    "Each page reproduces the posted settings, **measures why** it fails, and lets you apply the fix "
    "and watch it work. Every chart is ready to paste into a report."
)

for case in registry.CASES.values():
    with st.container(border=True):
        st.page_link(case.page, label=f"**{case.title}**", icon=case.icon)
        st.caption(case.symptom)

with st.container(border=True):
    st.page_link(
        "pages/5_Your_run.py", label="**Your run: examine your own training script**", icon=":material/troubleshoot:"
    )
    st.caption(
        "`python -m core examine train.py --out runs/` runs it under the clinic's measurements and names what fails."
    )

device = ui.device_sidebar()
st.caption(f"Device: {ui.badge(device)}")
st.caption("Every page also runs headless: `python -m core list` and `python -m core run CASE`.")
ui.warm_up()  # last: the first run's one-off import, in the background while the page is read
