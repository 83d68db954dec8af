"""Case 2: a CIFAR-10 MLP stops learning when inputs are multiplied by 255."""

import streamlit as st

from core import ui
from core.cases.cifar import CASE as case
from core.cases.cifar import charts, data, diagnose, model, rule
from core.cases.cifar import config as cfg
from core.cases.cifar import run as run_

ui.page(case.short, case.emoji)
st.title("Case 2 · A CIFAR-10 MLP stops learning when inputs are multiplied by 255")
st.markdown(
    "A 3072-300-10 ReLU network without biases, trained with SGD (lr 0.02, momentum 0.9, weight decay 1e-4, "
    "batch 250) for 20 epochs on CIFAR-10 as `ToTensor()` gives it, reaches about 50% test accuracy. "
    "The poster then fed it `inputs * 255`: *the network no longer converges, the gradients grow fast and "
    "the outputs end up all zero.* lr / 255 trained again but only to 43%; initial weights / 255 plus "
    "lr / 255 brought the accuracy back, and so did lr / 255² on both layers, *which makes no sense to me*."
)

ui.init_settings(case)  # the presets with the quick view's budget (case.first_view)

# CIFAR-10 or the stand-in, decided before the dataset widget is drawn: on a first visit without CIFAR-10
# on disk and no way to download it, the page switches to the stand-in once, and says so.
dataset_key, root = ui.key(case, "dataset"), st.session_state[ui.key(case, "data_root")]
missing = None  # why CIFAR-10 cannot be used now, if it cannot
if st.session_state[dataset_key] == "cifar10":
    bar = st.empty()
    missing = data.cifar10_missing(root, lambda done, total: bar.progress(
        min(done / total, 1.0) if total else 0.0, text=data.download_text(root, done, total)))  # fmt: skip
    bar.empty()
    if missing is not None and "cifar.stand_in_because" not in st.session_state:
        st.session_state[dataset_key], st.session_state["cifar.stand_in_because"] = "synthetic", missing


def retry_download() -> None:
    data.forget_download_failures()
    st.session_state[dataset_key] = "cifar10"
    st.session_state.pop("cifar.stand_in_because", None)


if st.session_state[dataset_key] == "synthetic" and st.session_state.get("cifar.stand_in_because"):
    with st.container(border=True):
        st.markdown(data.stand_in_note(root, st.session_state["cifar.stand_in_because"]))
        st.button("Try the CIFAR-10 download again", key="cifar.retry", on_click=retry_download)

with st.sidebar:
    ui.preset_buttons(case, keep=cfg.DATA_AND_BUDGET, stay="the data and the budget")
    st.subheader("Data and budget")
    ui.choice_setting(case, "dataset")
    ui.text_setting(case, "data_root")
    ui.int_setting(case, "train_size", step=5000)
    ui.int_setting(case, "test_size", step=1000)
    ui.int_setting(case, "epochs", slider=True)
    ui.int_setting(case, "seed")
    for col, (label, budget) in zip(st.columns(2), cfg.BUDGETS.items(), strict=True):
        col.button(label, key=f"cifar.budget.{label.split()[0].lower()}", on_click=ui.load, args=(case, budget),
                   help=cfg.budget_help(budget), width="stretch")  # fmt: skip
    st.subheader("Inputs")
    ui.text_setting(case, "input_scale", slider=True)
    ui.choice_setting(case, "normalize")
    st.subheader("Model")
    ui.int_setting(case, "hidden", step=50, slider=True)
    ui.bool_setting(case, "bias")
    for name in ("layer1_init_scale", "layer2_init_scale"):
        ui.text_setting(case, name)
    st.subheader("Optimizer")
    ui.text_setting(case, "lr", slider=True)
    for name in ("layer1_lr_scale", "layer2_lr_scale", "layer1_wd_scale", "layer2_wd_scale", "momentum",
                 "weight_decay"):  # fmt: skip
        ui.text_setting(case, name)
    ui.int_setting(case, "batch_size", step=50, slider=True)
device = ui.device_sidebar()

if st.session_state[dataset_key] == "cifar10" and missing is not None:  # chosen again, still missing
    st.error(f"**dataset**: CIFAR-10 is not in `{data.describe_root(root)}` ({missing}).", icon="⚠️")
    st.button("Try the CIFAR-10 download again", key="cifar.retry.error", on_click=retry_download)
    st.stop()
config = ui.build_config(case)
preset = cfg.recipe_name(config)
st.caption(
    f"Settings: **{preset or 'custom'}** · data: **{data.LABELS[config.dataset]}**, {cfg.budget_text(config)} "
    f"(the post: all of them, 20 epochs) · seed {config.seed} · device: {ui.badge(device)}"
)

runs = ui.compare(case, config, device)  # the current run; compared and pinned runs once it is drawn
result = runs["current"]
m, ref = result.metrics, runs.get("as-posted")

cols = st.columns(5)
cols[0].metric(
    "Test accuracy",
    f"{m['test_accuracy']:.1%}",
    delta=f"{(m['test_accuracy'] - ref.metrics['test_accuracy']) * 100:+.1f} points vs as-posted" if ref else None,
    help=f"On {m['test_size']:,} test images of the {m['dataset']}. Chance: {1 / m['classes']:.0%}.",
)
cols[1].metric("Train accuracy", f"{m['train_accuracy']:.1%}", help="Last epoch, counted before each step, as posted")
cols[2].metric(
    "Final loss",
    ui.number(m["final_loss"]),
    help=f"Mean training loss over the last epoch. ln {m['classes']} = {m['chance_loss']:.4f} is a uniform guess.",
)
cols[3].metric("Dead ReLUs", f"{m['dead_relu_fraction']:.0%}", help="Hidden units that output 0 for every test image")
cols[4].metric(
    "Samples per second",
    f"{m['samples_per_second']:,.0f}",
    help=f"Training only (not the per-epoch test passes); the whole run took {result.seconds:.1f} s on {result.device}",
)
if m["diverged"]:
    st.error(diagnose.diverged_note(m), icon="💥")
note = diagnose.reshape_note(config, m["train_size"])
if note:
    st.info(note, icon="ℹ️")

ui.pins(case, config, runs)

figures = ui.figures(case.figures, runs, **ui.loss_view(case))
ui.chart_row(figures, "loss", "accuracy")
ui.sharpness(figures["sharpness"], runs)
for pair in (("grad_norm", "update_ratio"), ("dead", "images")):
    ui.chart_row(figures, *pair)

st.subheader("Why × 255 breaks it: the s² rule")
left, right = st.columns([3, 2])
with left:
    ui.chart(figures["rule"])
right.markdown(rule.explain(result.frames["rule"]))

st.subheader("The post's table, re-run")
budget = (*(getattr(config, k) for k in cfg.DATA_AND_BUDGET), str(device))
if ui.on_demand("cifar.table", "Run the post's table", budget, "Test accuracy of the post's six settings on these "
                f"data and this budget ({cfg.budget_text(config)}): six training runs, each cached."):  # fmt: skip
    configs = cfg.table_configs(config)
    done = {n: ui.run(case, c, device, label=f"The post's table, {i} of {len(configs)}: {n}")
            for i, (n, c) in enumerate(configs.items(), start=1)}  # fmt: skip
    table = rule.table_frame(done)
    st.table(rule.table_text(table))
    left, right = st.columns([3, 2])
    with left:
        ui.chart(charts.table_chart(table, charts.data_label(done["as-posted"])))
    right.caption(rule.TABLE_NOTE)

st.subheader("Diagnosis")
ui.findings(case, case.diagnose(config, result), config)
ui.lr_finder(case, config, device, case.lr_find)
ui.downloads(case, config, result, figures)
ui.show_code(model.to_input, model.forward, model.make_optimizer, run_.run)
ui.train_the_rest(case)
