"""Case 1: a shallow tanh network fits sin(x) badly."""

import math

import streamlit as st

from core import ui
from core.cases.sine import CASE as case
from core.cases.sine import run
from core.cases.sine.config import AS_POSTED, CLAIM_SEEDS

ui.page(case.short, case.emoji)
st.title("Case 1 · A shallow tanh network fits sin(x) badly")
st.markdown(
    "From Cross Validated question 320289: a 1-128-1 network with tanh after both layers, no biases and "
    "std-1 weights, trained by hand-written gradient descent (lr 4e-7) on the **sum** of squared errors "
    "over 4000 points of sin(x)/2.5 + noise, x in [-1, 9). The poster saw *extra wiggles in the first two "
    "units of x, then a flat output*, and a loss curve that jumps around."
)

ui.init_settings(case)
with st.sidebar:
    ui.preset_buttons(case)
    st.subheader("Data")
    ui.points_upload(case)
    own = bool(st.session_state[ui.key(case, "points")])  # your points replace the posted sin(x) data
    ui.int_setting(case, "n_points", step=500, disabled=own, slider=True)
    if own:
        st.caption("n_points is ignored: your points are the data.")
    ui.bool_setting(case, "standardize_x")
    ui.int_setting(case, "seed")
    st.subheader("Model")
    ui.text_setting(case, "hidden")
    ui.choice_setting(case, "activation")
    ui.choice_setting(case, "output_activation")
    ui.bool_setting(case, "bias")
    ui.choice_setting(case, "init")
    st.subheader("Training")
    ui.choice_setting(case, "loss")
    ui.choice_setting(case, "optimizer")
    ui.text_setting(case, "lr", slider=True)
    ui.int_setting(case, "steps", step=500, slider=True)
device = ui.device_sidebar()

config = ui.build_config(case)
preset = case.preset_name(config)
st.caption(f"Settings: **{preset or 'custom'}** · device: {ui.badge(device)}")

runs = ui.compare(case, config, device)  # the current run; compared and pinned runs once it is drawn
result = runs["current"]
m = result.metrics

if config.points:
    st.caption(
        f"Fitting your {len(config.points):,} points: n_points is ignored, there is no true function to compare "
        "with (the fit is measured against your points), and *as-posted* means the posted settings on your points."
    )

cols = st.columns(5)
reference = runs.get("as-posted")
# with your own points there is no sin(x)/2.5 to compare with: the fit is measured against your points
rmse = "rmse_vs_points" if config.points else "rmse_vs_truth"
cols[0].metric(
    "RMSE vs your points" if config.points else "RMSE vs sin(x)/2.5",
    ui.number(m[rmse]),
    delta=f"{m[rmse] - reference.metrics[rmse]:+.4f} vs as-posted"
    if reference and math.isfinite(m[rmse] - reference.metrics[rmse])
    else None,
    delta_color="inverse",
    help="Root mean squared error of the final network against your training points."
    if config.points
    else "On a fine grid over [-1, 9]. The noise std is 0.05; a good fit is far below it.",
)
cols[1].metric(
    "Final training MSE",
    ui.number(m["final_mse"]),
    help=f"Mean squared error over the training points at the last step: the unit of the loss charts. The loss "
    f"minimised is {config.loss}"
    + (f" (n × MSE), which ended at {ui.number(m['final_loss'])}." if config.loss == "sse" else "."),
)
cols[2].metric("Saturated hidden activations", f"{m['saturated_fraction']:.0%}")
cols[3].metric(
    "Units switching near x = 0", f"{m['transitions_near_zero']:.0%}", help="switch point within [-0.5, 0.5]"
)
cols[4].metric("Steps run", f"{m['steps_run']:,}", help=f"{result.seconds:.2f} s on {result.device}")
if m["diverged"]:
    st.error(
        f"The loss became NaN or infinite at step {m['diverged_at']}: the run diverged. The charts show it "
        "up to the last finite step. A smaller lr (or a mean loss instead of a sum) keeps the steps in range.",
        icon=":material/warning:",
    )
ui.seeds(case, config, device, result)  # the spread over a few seeds, trained after the first view
ui.pins(case, config, runs)

figures = ui.figures(case.figures, runs, **ui.loss_view(case, side="right"))
ui.chart_row(figures, "fit", "loss")
ui.sharpness(figures["sharpness"], runs)
left, right = st.columns(2)
with left:
    ui.chart(figures["units"])
with right:
    ui.chart(figures["saturation"])
    ui.chart(figures["preact"])

st.subheader("Diagnosis")
ui.findings(case, case.diagnose(config, result), config)
st.caption(
    f"Measured over seeds {CLAIM_SEEDS[0]}-{CLAIM_SEEDS[-1]} with {AS_POSTED.steps} steps: as posted, the fit "
    "stays far above the noise (and in some seeds the saturated output never moves); the poster's Adam + L1 "
    "answer helps a little; biases are the cure: `fixed` reaches the noise floor. The same fix without biases "
    "stays poor."
)
ui.lr_finder(case, config, device, case.lr_find)
ui.downloads(case, config, result, figures)
ui.show_code(run.forward, run.run)
ui.train_the_rest(case)
