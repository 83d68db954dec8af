"""Case 3: fitting a polynomial with nn.Linear crawls, or explodes."""

import streamlit as st

from core import registry, ui
from core.cases.poly import charts, descend, diagnose
from core.cases.poly.config import ADAM_RATIO, AS_POSTED_LOSS, LR_FIND_EXPLOSION, NOTE, OPTIMUM_LOSS, STANDARDIZED_LOSS

case = registry.get("poly")
ui.page(case.short, case.emoji)
st.title("Case 3 · Fitting a polynomial with nn.Linear crawls, or explodes")
st.markdown(
    "From the PyTorch forums: fit y = sin(x) at 6 points x = linspace(2, 5, 6) with a degree-4 polynomial, "
    "feeding the features [x⁴, x³, x², x] to `nn.Linear(4, 1)` (its bias is the constant term), "
    "`MSELoss(reduction='sum')` and SGD at lr 1e-6. The poster saw the *loss still about 1 after 10,000 "
    "iterations*, and *any learning rate above about 1e-4 diverging to infinity at once*, while a hand-written "
    "version reached 1e-6."
)
st.info(NOTE, icon="ℹ️")

ui.init_settings(case)
with st.sidebar:
    ui.preset_buttons(case)
    st.subheader("Data")
    ui.int_setting(case, "n_points", slider=True)
    ui.text_setting(case, "x_min")
    ui.text_setting(case, "x_max")
    ui.text_setting(case, "noise")
    ui.points_upload(case)
    ui.int_setting(case, "seed")
    st.subheader("Model")
    ui.int_setting(case, "degree")
    ui.choice_setting(case, "basis", horizontal=False)
    ui.choice_setting(case, "dtype")
    ui.choice_setting(case, "init")
    st.subheader("Training")
    ui.choice_setting(case, "optimizer")
    ui.text_setting(case, "lr", slider=True)
    ui.text_setting(case, "momentum")
    ui.int_setting(case, "epochs", step=1000, slider=True)
    ui.choice_setting(case, "reduction")
device = ui.device_sidebar()

config = ui.build_config(case)
preset = case.preset_name(config)
st.caption(f"Settings: **{preset or 'custom'}** · device: {ui.badge(device)}")

if config.points:
    st.caption(
        f"Fitting your {len(config.points):,} points: n_points, x_min, x_max and noise are ignored, there is no "
        "true function to draw, and *as-posted* means the posted settings on your points."
    )

runs = ui.compare(case, config, device)  # the current run; compared and pinned runs once it is drawn
result = runs["current"]
m = result.metrics
limit, limit_name = diagnose.stability_limit(config, m)
for col, card in zip(st.columns(5), charts.cards(config, result), strict=True):
    col.metric(**card)
if m["diverged"]:
    st.warning(
        f"The loss overflowed at epoch {m['diverged_at']}: the run diverged, and there is no fitted polynomial "
        f"to show. lr {config.lr:g} is {config.lr / limit:.3g}× the stability limit {limit_name} = {limit:.3g}.",
        icon="💥",
    )

ui.seeds(case, config, device, result)  # the spread over a few seeds, trained after the first view
ui.pins(case, config, runs)

figures = ui.figures(case.figures, runs, **ui.loss_view(case, side="right"))
ui.chart_row(figures, "fit", "loss")
ui.sharpness(figures["sharpness"], runs)

left, right = st.columns(2)
with left:
    ui.chart(figures["scan"])
    if config.optimizer == "lbfgs":
        st.info(
            "L-BFGS picks its own step length by a line search, so it has no learning rate to scan. "
            "The scan shows plain SGD on the same loss, for reference.",
            icon="ℹ️",
        )
    elif config.optimizer == "adam":
        st.caption(
            f"Adam, {config.epochs:,} epochs, one run per lr, all trained at once. Adam moves each weight by "
            "about lr per step whatever the curvature, so it has no analytic limit to draw."
        )
    else:
        st.caption(
            f"{'SGD with momentum' if config.optimizer == 'momentum' else 'Plain SGD'}, {config.epochs:,} epochs, "
            f"{len(result.frames['scan'])} learning rates trained at once as one batched computation; the ring is "
            "the current lr. Below the dashed limit every run ends lower than it started; above it every run "
            "grows or overflows."
        )
with right:
    ui.chart(figures["eigenvalues"])
    slowest = (
        f" At lr {config.lr:g} the flattest direction needs about {m['slowest_direction_epochs']:.2g} epochs per "
        "factor e."
        if config.optimizer in ("sgd", "momentum")
        else ""
    )
    st.markdown(
        f"The loss is quadratic in the {config.degree + 1} coefficients, with Hessian "
        f"H = 2·AᵀA{'/n' if config.reduction == 'mean' else ''} (A: the features and a column of ones). "
        f"Its eigenvalues run from {m['lambda_min']:.3g} to {m['lambda_max']:.3g}. A step of lr shrinks the error "
        f"along eigenvalue λ by |1 − lr·λ| per epoch, so the steepest direction caps lr at 2/λmax = "
        f"{m['max_stable_lr']:.3g}.{slowest}"
    )

left, right = st.columns(2)
with left:
    ui.chart(figures["coefficients"])
with right:
    st.markdown("**Coefficients** (raw power basis, constant term last)")
    st.table(charts.coefficient_text(runs))

st.subheader("Diagnosis")
ui.findings(case, case.diagnose(config, result), config)
(lo1, hi1), (lo10, hi10) = AS_POSTED_LOSS[1000], AS_POSTED_LOSS[10_000]
st.caption(
    f"Measured over seeds 0-4: as posted, the loss is {lo1:g}-{hi1:g} after 1000 epochs and {lo10:g}-{hi10:g} "
    f"after 10,000 (the post's *about 1*), five orders of magnitude above the least-squares optimum "
    f"{OPTIMUM_LOSS:.2g}; 0.99·(2/λmax) is stable and 1.01·(2/λmax) diverges in every seed. Re-based on "
    f"z-scored powers the same SGD ends near {STANDARDIZED_LOSS:g}, on powers of x mapped to [-1, 1] at "
    "the optimum by 10,000 epochs, and on Legendre polynomials (`fixed`) at the optimum within a few hundred, in "
    f"float32. Adam on the raw powers ends {ADAM_RATIO[0]:,}-{ADAM_RATIO[1]:,}× above it; "
    "L-BFGS reaches it in float64 but stalls in float32 for some seeds."
)
if config.optimizer == "lbfgs":
    st.caption("The learning-rate range test does not apply to L-BFGS: it picks its own step length by a line search.")
elif config.optimizer == "adam":  # no analytic limit to draw
    ui.lr_finder(case, config, device, case.lr_find)
else:
    ui.lr_finder(case, config, device, case.lr_find, limit=limit, limit_label=limit_name)
    f32, f64 = LR_FIND_EXPLOSION["float32"], LR_FIND_EXPLOSION["float64"]
    st.caption(
        f"The range test's loss explodes just past the dashed {limit_name} (measured: {f32[0]:g}-{f32[1]:g}× it in "
        f"float32, {f64[0]:g}-{f64[1]:g}× in float64), because the rate keeps growing while the steepest direction "
        "climbs back from rounding level. Its suggestion, where the loss fell fastest, is where that steepest "
        "direction was being absorbed: it says nothing about the flat directions, which need a better basis rather "
        "than another rate."
    )
ui.downloads(case, config, result, figures)
ui.show_code(descend.descend, case.script.main)
ui.train_the_rest(case)
