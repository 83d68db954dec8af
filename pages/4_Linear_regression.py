"""Case 4: linear regression that only converges for small, unshuffled batches."""

import streamlit as st

from core import registry, ui
from core.cases.linreg import view
from core.cases.linreg.data import quadratic
from core.cases.linreg.diagnose import REACHED, reach
from core.cases.linreg.single import SINGLE
from core.cases.linreg.sweep import fit_batched
from core.charts import sharpness

case = registry.get("linreg")
ui.page(case.short, case.emoji)
st.title("Case 4 · Linear regression converges only for small, unshuffled batches")
st.markdown(
    "From a data-science Q&A site (2022, never answered): one `nn.Linear(1, 1)` in PyTorch Lightning, fitted "
    "to 1000 points of y = −4x + 0.05·noise with `F.mse_loss`, Adam at lr 1e-2 for 100 epochs, once for every "
    "batch size `int(x) for x in linspace(10, 1000, 100)`, with shuffling on and off. The poster saw that "
    "*without shuffling only small batches reach slope −4 and intercept 0, and with shuffling no batch size "
    "does*. Two independent causes hide in that plot. Here all 200 fits train at once, in well under a second."
)

ui.init_settings(case)
with st.sidebar:
    ui.preset_buttons(case)
    st.subheader("The loss and the budget")
    ui.choice_setting(case, "target_shape")
    ui.choice_setting(case, "budget")
    ui.int_setting(case, "epochs", step=10, slider=True)
    ui.int_setting(case, "steps", step=1000, slider=True)
    ui.choice_setting(case, "shuffle")
    st.subheader("The sweep")
    ui.int_setting(case, "batch_sizes_from", step=10)
    ui.int_setting(case, "batch_sizes_to", step=10)
    ui.int_setting(case, "batch_sizes_count", step=10)
    st.subheader("One run in detail")
    ui.int_setting(case, "batch_size", slider=True)
    st.subheader("Optimizer")
    ui.choice_setting(case, "optimizer")
    ui.text_setting(case, "lr", slider=True)
    st.subheader("Data")
    ui.int_setting(case, "n_points", step=100, slider=True)
    ui.text_setting(case, "noise")
    ui.text_setting(case, "slope")
    ui.text_setting(case, "intercept")
    ui.int_setting(case, "seed")
device = ui.device_sidebar()

config = ui.build_config(case)
preset = case.preset_name(config)
st.caption(
    f"Settings: **{preset or 'custom'}** · device: {ui.badge(device)} · the sweep runs on the CPU (a step is a "
    "few hundred numbers), and so does the single run (a step is a few dozen)"
)

# the current sweep; the posted and fixed sweeps and the pins beside it once it is drawn
also = {"fixed": case.presets["fixed"]}
runs = ui.compare(case, config, device, also=also)
name, result = "current", runs["current"]

st.subheader("The post's three panels")
reached = reach(config, result.frames["sweep"])
steps = result.frames["sweep"].drop_duplicates("batch_size")["steps"]
cols = st.columns(4)
for col, shuffled in zip(cols, (True, False), strict=False):
    if shuffled in reached:
        r = reached[shuffled]
        col.metric(
            f"Reach slope {config.slope:g}, {'shuffled' if shuffled else 'not shuffled'}",
            f"{r['reached']} of {r['runs']}",
            help=f"Batch sizes that end within {REACHED} of the true slope. The closest: "
            f"{r['best_slope']:.3f} at batch size {r['best_batch_size']}.",
        )
cols[2].metric("Steps, smallest → largest batch", f"{steps.iloc[0]:,} → {steps.iloc[-1]:,}")
cols[3].metric("Sweep time", f"{result.seconds:.2f} s", help=f"{len(result.frames['sweep'])} fits, {result.device}")
ui.pins(case, config, runs, also=also)

figures = ui.figures(case.figures, runs, details={})  # the sweep's charts, drawn before the detail trains
ui.chart_row(figures, "slope", "intercept")  # two to a row: each over 300 px wide at 1024 px
ui.chart_row(figures, "final_loss", "steps")
st.caption(
    "Solid lines: shuffled every epoch; dashed: not shuffled. Dotted: the true slope and intercept, and the noise "
    "variance, which is what the loss meant comes down to. The as-posted training loss is the broadcast one, "
    "averaged over all B² pairs."
)

st.markdown(view.budget_note(config, result))

st.subheader("One run in detail")
problems = SINGLE.check(config)  # the sweep's one run at batch_size: the case's task "single"
for p in problems:
    st.error(f"**{p.split(':', 1)[0]}**: {p.split(':', 1)[1].strip()}", icon="⚠️")
if not problems:
    detail = ui.run(case, config, device, label="One run in detail", task=SINGLE)
    details = {name: detail}
    for label, pin_config in view.pin_details(runs, ui.pinned(case)).items():  # each pin's run, overlaid
        details[label] = ui.run(case, pin_config, device, label=f"Pinned run {label}: its run in detail", task=SINGLE)
    shown = ui.loss_view(case)  # the loss chart's smoothing and scale
    # the details' charts beside the sweeps' drawn above (a new dict: the cached ones are shared), each run in
    # the colour it has there
    figures = {**figures, **ui.figures(case.figures, runs, details=details, sweep_charts=False, **shown)}
    d = detail.metrics
    st.markdown(view.detail_note(config, detail))
    if d["diverged"]:
        st.error("The loss became NaN or infinite: the run diverged. A smaller lr keeps the steps in range.", icon="💥")
    left, right = st.columns([3, 2])
    with left:
        ui.chart(figures["fit"])
        ui.chart(figures["loss"])
        ui.chart(figures["sharpness"])
    with right:
        st.markdown("**The shapes, as they really were**")
        st.table(detail.frames["shapes"], hide_index=True)
        if d["warning"]:
            st.markdown("**The warning PyTorch raised**, verbatim (in Lightning's console output it scrolls away):")
            st.code(d["warning"], language=None, wrap_lines=True)
        else:
            st.success("PyTorch raised no warning: predictions and targets have the same shape.", icon="✅")
        st.markdown("**The loss over the last epoch's batches**, at two lines:")
        st.table(view.loss_text(detail.frames["epoch_losses"]), hide_index=True)
        st.caption(
            "The optimizer goes where its loss is lower. The loss meant is lowest at the data's line; the loss "
            "averaged over all B² pairs of a batch is lowest when every prediction is the batch's mean target."
        )
        st.markdown(f"**Sharpness against the stability line.** {sharpness.reading(detail)}")
        st.caption(sharpness.EXPLAIN)
    st.markdown("**What the loss averages**")
    ui.chart_row(figures, "pairs", "meant")
    st.markdown(view.pairs_note(detail))

st.subheader("Diagnosis")
ui.findings(case, case.diagnose(config, result, detail if not problems else None), config)
st.caption(view.fixed_caption())
ui.downloads(case, config, result, figures)
ui.show_code(SINGLE.run, quadratic, fit_batched)
ui.train_the_rest(case)
