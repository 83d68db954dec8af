"""Page 5: your own training run, examined: a run record from `python -m core examine --out`."""

import json
import re

import streamlit as st

from core import registry, ui
from core.charts import examine as charts
from core.examine import demo
from core.examine import record as record_

ui.page("Your run", "🔎")
st.title("Your run · examine your own training")
st.markdown(
    "Run any PyTorch training script under the clinic's examiner, unchanged: it watches the losses, "
    "gradients, updates and activations while the script trains, and names what fails in the pages' terms, "
    "with the measured evidence and the fix. Its run record (JSON) opens here. Uploaded records are read "
    "as data only; nothing in them is run."
)
st.code("python -m core examine train.py --out runs/ --steps 2000 -- --your --args", language="bash", wrap_lines=True)


def escaped(text: str) -> str:
    """A record's text as literal Markdown (a record is untrusted: no links, no formatting)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!<>|~])", r"\\\1", text)


@st.cache_data(max_entries=4, show_spinner=False)
def examined(case_name: str) -> dict:
    return demo.examine_case(case_name)


host = (st.context.headers.get("Host") or "").rsplit(":", 1)[0]
local = host in ("localhost", "127.0.0.1", "[::1]")
sources = ["Examine a case's script", "Upload a record"] + (["A record in runs/"] if local else [])
source = st.radio("Open", sources, key="yourrun_source", horizontal=True)

rec = None
if source == "Upload a record":
    upload = st.file_uploader("A run record (.json, from --out)", type=["json"], key="yourrun_upload")
    if upload is not None:
        try:
            if upload.size > record_.MAX_BYTES:  # before reading it
                raise record_.RecordError(f"{upload.name} is {upload.size:,} bytes; at most {record_.MAX_BYTES:,}")
            rec = record_.parse(upload.getvalue(), upload.name)
        except record_.RecordError as e:
            st.error(str(e), icon=":material/error:")
elif source == "A record in runs/":
    names = record_.listing()
    if not names:
        st.info("No .json files in ./runs yet: `python -m core examine train.py --out runs/` writes one.")
    else:
        name = st.selectbox("Record", names, key="yourrun_file")
        try:
            rec = record_.read_from(name)
        except record_.RecordError as e:
            st.error(str(e), icon=":material/error:")
else:
    case_name = st.selectbox("Case", list(demo.BUDGET), format_func=lambda n: registry.get(n).title, key="yourrun_case")
    with st.expander("The script that runs: the case's standalone export, as-posted, on a budget of seconds"):
        st.code(demo.demo_script(case_name), language="python")
    if st.button("Examine a case's as-posted script", key="yourrun_demo", type="primary"):
        with st.spinner("Training under the examiner (one examination at a time in this server)…"):
            st.session_state["yourrun_demo_record"] = (case_name, examined(case_name))
    shown = st.session_state.get("yourrun_demo_record")
    rec = shown[1] if shown and shown[0] == case_name else None

if rec is None:
    st.stop()

st.divider()
st.subheader(f"{rec['script']}: {rec['steps']:,} optimizer steps in {rec['seconds']:.2f} s")
exc = rec.get("exception")
if isinstance(exc, dict):
    st.warning(
        escaped(f"The script raised {exc.get('type')} at line {exc.get('line')}: {exc.get('message')}"),
        icon=":material/warning:",
    )
if not rec["findings"]:
    st.success(
        "No finding: nothing in the measurements matched a known failure."
        + ("" if rec["steps"] else " (No optimizer step was seen.)"),
        icon=":material/check_circle:",
    )
for f in rec["findings"]:
    with st.container(border=True):
        st.markdown(f"**{escaped(f['title'])}** · {escaped(f['key'])} · from step {f['step']:,}")
        st.markdown(escaped(f["evidence"]))
        st.code(f["fix"], language="python", wrap_lines=True)

st.subheader("The run, as measured")
left, right = st.columns(2)
with left:
    ui.chart(charts.loss_chart(rec))
    ui.chart(charts.grad_norm_chart(rec))
with right:
    ui.chart(charts.lr_chart(rec))
    ui.chart(charts.update_ratio_chart(rec))
ui.chart(charts.activation_chart(rec))
st.download_button(
    "Download this run record (JSON)",
    data=json.dumps(rec),
    file_name=f"{rec['script'].rsplit('.', 1)[0]}.examine.json",
    mime="application/json",
    key="yourrun_download",
)
