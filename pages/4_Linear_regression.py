"""Case 4: linear regression that only converges for small, unshuffled batches."""

import streamlit as st

from core import linreg, registry, ui
from core.charts import linreg as charts
from core.charts import sharpness

case = registry.get("linreg")
LOSS_FORMAT = {c: st.column_config.NumberColumn(format="%.4g") for c in ("as mse_loss averaged it", "as meant")}
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
if st.session_state[ui.key(case, "mode")] != "sweep":  # a link may carry the CLI's mode=single
    ui.load(case, {"mode": "sweep"})
    st.info(
        "From the link: mode=single is the CLI's single run. This page trains the sweep and shows the run at "
        "batch_size in detail below it.",
        icon=":material/link:",
    )
with st.sidebar:
    ui.preset_buttons(case)
    st.subheader("The loss and the budget")
    ui.choice_setting(case, "target_shape")
    ui.choice_setting(case, "budget")
    ui.int_setting(case, "epochs", step=10)
    ui.int_setting(case, "steps", step=1000)
    ui.choice_setting(case, "shuffle")
    st.subheader("The sweep")
    ui.int_setting(case, "batch_sizes_from", step=10)
    ui.int_setting(case, "batch_sizes_to", step=10)
    ui.int_setting(case, "batch_sizes_count", step=10)
    st.subheader("One run in detail")
    ui.int_setting(case, "batch_size")
    st.subheader("Optimizer")
    ui.choice_setting(case, "optimizer")
    ui.text_setting(case, "lr")
    st.subheader("Data")
    ui.int_setting(case, "n_points", step=100)
    ui.text_setting(case, "noise")
    ui.text_setting(case, "slope")
    ui.text_setting(case, "intercept")
    ui.int_setting(case, "seed")
device = ui.device_sidebar()

config = ui.build_config(case)
preset = case.preset_name(config)
st.caption(
    f"Settings: **{preset or 'custom'}** · device: {ui.badge(device)} · the sweep runs on the CPU (a step is a "
    "few hundred numbers); the single run on the device"
)

# the current sweep; the posted and fixed sweeps and the pins beside it once it is drawn
also = {"fixed": case.presets["fixed"]}
runs = ui.compare(case, config, device, also=also)
name, result = "current", runs["current"]
m = result.metrics

st.subheader("The post's three panels")
reached = linreg.reach(config, result.frames["sweep"])
steps = result.frames["sweep"].drop_duplicates("batch_size")["steps"]
cols = st.columns(4)
for col, shuffled in zip(cols, (True, False), strict=False):
    if shuffled in reached:
        r = reached[shuffled]
        col.metric(
            f"Reach slope {config.slope:g}, {'shuffled' if shuffled else 'not shuffled'}",
            f"{r['reached']} of {r['runs']}",
            help=f"Batch sizes that end within {linreg.REACHED} of the true slope. The closest: "
            f"{r['best_slope']:.3f} at batch size {r['best_batch_size']}.",
        )
cols[2].metric("Steps, smallest → largest batch", f"{steps.iloc[0]:,} → {steps.iloc[-1]:,}")
cols[3].metric("Sweep time", f"{result.seconds:.2f} s", help=f"{len(result.frames['sweep'])} fits, {result.device}")
ui.pins(case, config, runs, also=also)

figures = charts.figures(runs, details={})  # the sweep's charts, drawn before the detail trains
cols = st.columns(3)
for col, field in zip(cols, ("slope", "intercept", "final_loss"), strict=True):
    with col:
        ui.chart(figures[field])
st.caption(
    "Solid lines: shuffled every epoch; dashed: not shuffled. Dotted: the true slope and intercept, and the noise "
    "variance, which is what the loss meant comes down to. The as-posted training loss is the broadcast one, "
    "averaged over all B² pairs."
)

left, right = st.columns([3, 2])
with left:
    needed = linreg.steps_needed(config, m["initial_slope"]) if config.optimizer == "adam" else None
    ui.chart(figures["steps"])
with right:
    if config.budget == "epochs":
        st.markdown("**The second cause: an epoch budget gives large batches few steps**")
        st.markdown(
            f"With a budget of epochs, a run takes epochs × ceil(n / B) steps: here {steps.iloc[0]:,} at the "
            f"smallest batch and {steps.iloc[-1]:,} at the largest. Adam moves a weight by about lr per step, "
            f"whatever the gradient's size, and every fit starts from the same line, slope {m['initial_slope']:.2f}. "
            + (
                f"Reaching {config.slope:g} takes at least {needed:,} steps at lr {config.lr:g}: batch sizes "
                "whose line lies below the dotted rule stop short, with or without the shape bug. "
                if needed is not None
                else ""
            )
            + "The fix is a budget of steps (or a larger learning rate for larger batches), not of epochs."
        )
    else:
        st.markdown("**A budget of steps: every batch size gets the same number**")
        st.markdown(
            f"Every batch size takes {config.steps:,} optimizer steps, however many epochs that is. Adam moves a "
            f"weight by about lr per step and every fit starts from slope {m['initial_slope']:.2f}"
            + (
                f", so reaching {config.slope:g} takes at least {needed:,} steps at lr {config.lr:g}."
                if needed
                else "."
            )
            + " A larger batch only makes each step's gradient less noisy."
        )

st.subheader("One run in detail")
detail_config = linreg.detail_config(config)
problems = case.errors(detail_config)
for p in problems:
    st.error(f"**{p.split(':', 1)[0]}**: {p.split(':', 1)[1].strip()}", icon="⚠️")
if not problems:
    detail = ui.run(case, detail_config, device, label="One run in detail")
    details = {name: detail}
    for label, pin_config in ui.pinned(case).items():  # each pinned sweep's run in detail, overlaid
        pin_detail = linreg.detail_config(pin_config)
        if label in runs and not case.errors(pin_detail):
            details[label] = ui.run(case, pin_detail, device, label=f"Pinned run {label}: its run in detail")
    figures = charts.figures(runs, details)  # all of them, each run in one colour throughout
    d = detail.metrics
    how = "shuffled" if d["shuffle"] else "not shuffled"
    st.markdown(
        f"Batch size **{d['batch_size']}**, {how}"
        + (" (the sweep trains both; this run is shuffled, as the posted code was)" if config.shuffle == "both" else "")
        + f": {d['steps_run']:,} steps of the plain PyTorch loop (`F.mse_loss(preds, y)`, `torch.optim.Adam`) "
        f"ended at slope **{d['slope']:.3f}** and intercept **{d['intercept']:.3f}**."
    )
    if d["diverged"]:
        st.error("The loss became NaN or infinite: the run diverged. A smaller lr keeps the steps in range.", icon="💥")
    left, right = st.columns([3, 2])
    with left:
        ui.chart(figures["fit"])
        ui.chart(figures["loss"])
        ui.chart(figures["sharpness"])
    with right:
        st.markdown("**The shapes, as they really were**")
        st.dataframe(detail.frames["shapes"], hide_index=True, width="stretch")
        if d["warning"]:
            st.markdown("**The warning PyTorch raised**, verbatim (in Lightning's console output it scrolls away):")
            st.code(d["warning"], language=None, wrap_lines=True)
        else:
            st.success("PyTorch raised no warning: predictions and targets have the same shape.", icon="✅")
        st.markdown("**The loss over the last epoch's batches**, at two lines:")
        st.dataframe(detail.frames["epoch_losses"], hide_index=True, width="stretch", column_config=LOSS_FORMAT)
        st.caption(
            "The optimizer goes where its loss is lower. The loss meant is lowest at the data's line; the loss "
            "averaged over all B² pairs of a batch is lowest when every prediction is the batch's mean target."
        )
        st.markdown(f"**Sharpness against the stability line.** {sharpness.reading(detail)}")
        st.caption(sharpness.EXPLAIN)
    left, middle, right = st.columns([2, 1, 1])
    with left:
        ui.chart(figures["pairs"])
    with middle:
        ui.chart(figures["meant"])
    with right:
        st.markdown("**What the loss averages**")
        st.markdown(
            "Each cell is a prediction minus a target of the run's last full batch, at the final weights: p_i − y_j. "
            + (
                "`F.mse_loss` with targets (B, 1, 1) squares and averages *every* cell; the loss meant averages "
                "only the outlined diagonal, p_i − y_i, shown again as bars. The matrix is smallest when every "
                "prediction equals the batch's mean target, and that is a flat line. With unshuffled small batches "
                "the targets of a batch are nearly equal, so the rows hardly differ and the two losses agree."
                if d["broadcast_warning"]
                else "With targets (B, 1), `F.mse_loss` averages only the outlined diagonal, p_i − y_i, shown again "
                "as bars: each prediction against its own target. The rest of the matrix is what the posted "
                "shapes would have averaged as well."
            )
        )

st.subheader("Diagnosis")
ui.findings(case, linreg.diagnose(config, result, detail if not problems else None), config)
st.caption(
    "Measured on the 2-core CPU, seeds 0-9: with targets (B, 1) and 5000 Adam steps for every batch size, every "
    "batch size from 10 to 1000, shuffled or not, ends within 0.05 of slope −4 and 0.02 of intercept 0."
)
ui.downloads(case, config, result, figures)
ui.show_code(linreg.run_single, linreg.quadratic, linreg.fit_batched)
ui.train_the_rest(case)
