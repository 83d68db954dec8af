"""Case 2: a CIFAR-10 MLP stops learning when inputs are multiplied by 255."""

import dataclasses

import streamlit as st

from core import cifar, cifar_data, registry, ui
from core.charts import cifar as charts
from core.settings import SettingError

case = registry.get("cifar")
ui.page(case.short, case.emoji)
st.title("Case 2 · A CIFAR-10 MLP stops learning when inputs are multiplied by 255")
st.markdown(
    "A 3072-300-10 ReLU network without biases, trained with SGD (lr 0.02, momentum 0.9, weight decay 1e-4, "
    "batch 250) for 20 epochs on CIFAR-10 as `ToTensor()` gives it, reaches about 50% test accuracy. "
    "The poster then fed it `inputs * 255`: *the network no longer converges, the gradients grow fast and "
    "the outputs end up all zero.* lr / 255 trained again but only to 43%; initial weights / 255 plus "
    "lr / 255 brought the accuracy back, and so did lr / 255² on both layers, *which makes no sense to me*."
)

# The first view trains the posted recipe on 5,000 images, tested on 2,000 (a few seconds); the
# posted budget is one click away. Both are ordinary settings, in the sidebar and the caption.
ui.init_settings(case)  # the presets with the quick view's budget (cifar.CASE.first_view)

# CIFAR-10 or the stand-in, decided before the dataset widget is drawn. On a first visit without
# CIFAR-10 on disk and no way to download it, the page switches to the synthetic stand-in and says so.
dataset_key, root = ui.key(case, "dataset"), st.session_state[ui.key(case, "data_root")]
cifar10_missing = None  # why CIFAR-10 cannot be used now, if it cannot
if st.session_state[dataset_key] == "cifar10" and not cifar_data.cifar10_on_disk(root):
    cifar10_missing = cifar_data.download_failure(root)
    if cifar10_missing is None:
        bar = st.progress(0.0, text="Downloading CIFAR-10 (163 MB) into its cache folder…")

        def show(done: int, total: int) -> None:
            share = min(done / total, 1.0) if total else 0.0
            bar.progress(share, text=f"Downloading CIFAR-10 into {cifar_data.describe_root(root)}: {done / 1e6:.0f} MB")

        try:
            cifar_data.download_cifar10(root, show)
        except SettingError:
            cifar10_missing = cifar_data.download_failure(root)
        bar.empty()
    if cifar10_missing is not None and "cifar.stand_in_because" not in st.session_state:
        st.session_state[dataset_key] = "synthetic"  # once per session; choosing cifar10 again is respected
        st.session_state["cifar.stand_in_because"] = cifar10_missing


def retry_download() -> None:
    cifar_data.forget_download_failures()
    st.session_state[dataset_key] = "cifar10"
    st.session_state.pop("cifar.stand_in_because", None)


if st.session_state[dataset_key] == "synthetic" and st.session_state.get("cifar.stand_in_because"):
    with st.container(border=True):
        st.markdown(
            f"**Synthetic stand-in.** CIFAR-10 is not in `{cifar_data.describe_root(root)}` and could not be "
            f"downloaded ({st.session_state['cifar.stand_in_because']}), so this page trains on the offline "
            "stand-in: 10 classes of generated 32×32 colour images (shapes of varied position, size and colour "
            f"on noisy backgrounds), {cifar_data.SYNTHETIC_SIZES[0]:,} for training and "
            f"{cifar_data.SYNTHETIC_SIZES[1]:,} for testing, like CIFAR-10. The failure and its fixes are the "
            "same; the accuracies are not CIFAR-10's. Put the unpacked `cifar-10-batches-py/` folder there "
            f"(or set `${cifar_data.DATA_DIR_ENV}`) to use the real images."
        )
        st.button("Try the CIFAR-10 download again", key="cifar.retry", on_click=retry_download)


def load_recipe(name: str) -> None:
    """A preset's model and optimizer; the data, the budget and the seed stay as they are."""
    values = dataclasses.asdict(case.presets[name])
    ui.load(case, {k: v for k, v in values.items() if k not in cifar.DATA_AND_BUDGET})


with st.sidebar:
    st.caption("Load a preset (the data and the budget stay)")
    cols = st.columns(2)
    for i, name in enumerate(case.presets):
        cols[i % 2].button(name, key=f"cifar.load.{name}", on_click=load_recipe, args=(name,), width="stretch")
    st.subheader("Data and budget")
    ui.choice_setting(case, "dataset")
    ui.text_setting(case, "data_root")
    ui.int_setting(case, "train_size", step=5000)
    ui.int_setting(case, "test_size", step=1000)
    ui.int_setting(case, "epochs")
    ui.int_setting(case, "seed")
    cols = st.columns(2)
    cols[0].button(
        "Quick view",
        key="cifar.budget.quick",
        on_click=ui.load,
        args=(case, cifar.QUICK),
        help="20 epochs of the first 5,000 training images, tested on 2,000: seconds on a laptop CPU",
        width="stretch",
    )
    cols[1].button(
        "Posted budget",
        key="cifar.budget.posted",
        on_click=ui.load,
        args=(case, {"train_size": 0, "test_size": 0, "epochs": 20}),
        help="20 epochs of every training image, tested on every test image, as posted: about 40 s on a 2-core CPU",
        width="stretch",
    )
    st.subheader("Inputs")
    ui.text_setting(case, "input_scale")
    ui.choice_setting(case, "normalize")
    st.subheader("Model")
    ui.int_setting(case, "hidden", step=50)
    ui.bool_setting(case, "bias")
    ui.text_setting(case, "layer1_init_scale")
    ui.text_setting(case, "layer2_init_scale")
    st.subheader("Optimizer")
    ui.text_setting(case, "lr")
    ui.text_setting(case, "layer1_lr_scale")
    ui.text_setting(case, "layer2_lr_scale")
    ui.text_setting(case, "layer1_wd_scale")
    ui.text_setting(case, "layer2_wd_scale")
    ui.text_setting(case, "momentum")
    ui.text_setting(case, "weight_decay")
    ui.int_setting(case, "batch_size", step=50)
device = ui.device_sidebar()

if st.session_state[dataset_key] == "cifar10" and cifar10_missing is not None:  # chosen again, still missing
    st.error(f"**dataset**: CIFAR-10 is not in `{cifar_data.describe_root(root)}` ({cifar10_missing}).", icon="⚠️")
    st.button("Try the CIFAR-10 download again", key="cifar.retry.error", on_click=retry_download)
    st.stop()
config = ui.build_config(case)
preset = cifar.recipe_name(config)
train = "all training images" if config.train_size == 0 else f"the first {config.train_size:,} training images"
test = "all test images" if config.test_size == 0 else f"the first {config.test_size:,} test images"
posted = (config.train_size, config.test_size, config.epochs) == (0, 0, 20)
budget = "the posted budget" if posted else "the post: all of them, 20 epochs"
st.caption(
    f"Settings: **{preset or 'custom'}** · data: **{cifar_data.LABELS[config.dataset]}**, {train} × "
    f"{config.epochs} epochs, tested on {test} ({budget}) · seed {config.seed} · device: {ui.badge(device)}"
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
    st.error(
        f"The loss became NaN or infinite at step {m['diverged_at']}: the run diverged. The charts show it up "
        "to the last finite step; a smaller lr (or the s² rule for a scaled input) keeps the steps in range.",
        icon="💥",
    )
note = cifar.reshape_note(config, m["train_size"])
if note:
    st.info(note, icon="ℹ️")

ui.pins(case, config, runs)

figures = charts.figures(runs)
ui.chart_row(figures, "loss", "accuracy")
ui.sharpness(figures["sharpness"], runs)
for pair in (("grad_norm", "update_ratio"), ("dead", "images")):
    ui.chart_row(figures, *pair)

st.subheader("Why × 255 breaks it: the s² rule")
sweep = result.frames["rule"]
at_255 = sweep[sweep["scale"] == cifar.S].set_index("recipe")["move_ratio"]
left, right = st.columns([3, 2])
with left:
    ui.chart(figures["rule"])
with right:
    st.markdown(
        "Multiply the inputs by *s* and layer 1's pre-activations *z = W x* grow *s*-fold, and so does the "
        "gradient of *W* (it is the error times *x*). One SGD step changes *z* by *lr · gradient · x*: "
        f"**s² times as much**. Measured on the first batch of these data, at s = 255 the first step moves *z* "
        f"**{at_255[cifar.RECIPES[0]]:,.0f}×** as far as at s = 1 (s² = {cifar.S**2:,.0f}; more, because the "
        "255-fold logits also saturate the softmax). With lr / 255 it is still "
        f"**{at_255[cifar.RECIPES[1]]:,.0f}×**, which is why that run trains, but badly.\n\n"
        "The rule that undoes the scale exactly: layer 1's initial weights / s (so *z* starts where it did) "
        "and layer 1's lr / s² (so it moves as it did), with its weight decay × s² (so lr × weight decay, the "
        "decay per step, stays as posted), **layer 2 untouched** (its input did not change). "
        f"Measured: **{at_255[cifar.RECIPES[2]]:.4f}×**. The poster's fixes are partial versions of it: "
        "weights / 255 on both layers shrinks the logits 255-fold too, and lr / 255² on both layers slows "
        "layer 2 as well while starting from 255-fold logits."
    )

st.subheader("The post's table, re-run")
table_budget = (*(getattr(config, k) for k in cifar.DATA_AND_BUDGET), str(device))
if st.session_state.get("cifar.table_for") != table_budget:
    st.caption(
        f"Test accuracy of the post's six settings on these data and this budget ({train} × {config.epochs} "
        f"epochs, tested on {test}): six training runs, each cached."
    )
    if st.button("Run the post's table", key="cifar.table"):
        st.session_state["cifar.table_for"] = table_budget
        st.rerun()
else:
    configs = cifar.table_configs(config)
    done = {}
    for i, (name, c) in enumerate(configs.items(), start=1):
        done[name] = ui.run(case, c, device, label=f"The post's table, {i} of {len(configs)}: {name}")
    table = cifar.table_frame(done)
    st.dataframe(
        table,
        hide_index=True,
        column_order=[
            "preset", "test_accuracy", "post says", "final_loss", "dead_relus", "first_step_move", "initial_logits",
            "changes",
        ],
        column_config={
            "test_accuracy": st.column_config.NumberColumn("test accuracy", format="percent"),
            "final_loss": st.column_config.NumberColumn("final loss", format="%.4g"),
            "dead_relus": st.column_config.NumberColumn("dead ReLUs", format="percent"),
            "first_step_move": st.column_config.NumberColumn("1st step moves z ×", format="%.3g"),
            "initial_logits": st.column_config.NumberColumn("initial logits ×", format="%.3g"),
        },
    )  # fmt: skip
    left, right = st.columns([3, 2])
    with left:
        ui.chart(charts.table_chart(table, charts.data_label(done["as-posted"])))
    with right:
        st.caption(
            "`1st step moves z ×`: how far the first SGD step moves layer 1's pre-activations, and "
            "`initial logits ×`: how large the logits start, both relative to as-posted on the same batch. "
            "Only the rule puts both back at 1: weights / 255 on both layers shrinks the logits 255-fold, "
            "lr / 255² leaves them 255-fold, and lr / 255 still moves z 255-fold too far (more with the "
            "saturated softmax)."
        )

st.subheader("Diagnosis")
ui.findings(case, cifar.diagnose(config, result), config)
ui.lr_finder(case, config, device, cifar.lr_find)
ui.downloads(case, config, result, figures)
ui.show_code(cifar.to_input, cifar.forward, cifar.make_optimizer, cifar.run)
ui.train_the_rest(case)
