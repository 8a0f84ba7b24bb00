"""Train: launch the notebook's three regimes, watch them live, stop, queue and compare them."""

import time

import streamlit as st

from core import export, figures, grid, models, preflight, runs
from core.config import DataConfig, ModelConfig, TrainConfig
from core.devices import describe_device
from core.errors import TransferLabError
from core.models import BACKBONES, REGIMES
from core.runs import RunConfig
from dashboard import forms, state

SELECTED = "train_selected_run"
LIVE_DEMO = {  # a frozen-head run: ~50 s on an idle 2-core CPU, ~20 s again once its features are cached
    "data": DataConfig(source="demo", max_train_images=540, max_test_images=180),
    "image_size": 96, "epochs": 5, "batch_size": 32, "learning_rate": 1e-2,  # the notebook grid's first row
}
TEACHING = {
    "scratch": (
        "**What is trained:** every one of the network's ~4 million weights, starting from random values. "
        "**Learning rate:** Adam's default (1e-3): random weights need big steps. "
        "**Watch for (exercise 4-12):** training accuracy climbing while validation accuracy stalls low "
        "and validation loss turns up: over-fitting."
    ),
    "frozen": (
        "**What is trained:** only the new head (batch norm + dense layer): a few thousand weights on top of "
        "ImageNet features. **Learning rate:** 1e-4 with weight decay 0.01, the best cell of the notebook's grid. "
        "**Watch for (exercise 4-13):** validation accuracy close to training accuracy: the model generalises. "
        "Compare its trainable parameters with scratch's."
    ),
    "finetune": (
        "**What is trained:** the head plus the top layers of the backbone (batch norm stays frozen). "
        "**Learning rate:** 1e-5, ten times smaller, so the ImageNet features are nudged, not destroyed. "
        "**Watch for (exercise 4-15):** a small gain over the frozen run; training accuracy racing ahead of "
        "validation means it has started to over-fit."
    ),
}


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h{seconds % 3600 // 60:02d}"


def weights_label(name: str, available: dict[str, bool]) -> str:
    row = BACKBONES[name]
    mark = "ImageNet weights here ✓" if available.get(name) else "ImageNet weights need a download"
    return f"{name} · {row.resolution} px · {mark}"


def run_label(record) -> str:
    """Names can repeat; the launch time tells runs apart."""
    return f"{record.name} · {time.strftime('%d %b %H:%M:%S', time.localtime(record.created_at))}"


def default_run_id() -> str | None:
    active = runs.running_run() or next(iter(runs.list_runs()), None)
    return active.id if active else None


# ------------------------------------------------------------------------------ live panel

@st.fragment(run_every=1.5)
def live_panel() -> None:
    run_id = st.session_state.get(SELECTED) or default_run_id()
    if run_id is None:
        st.info("No runs yet. Launch one below: the **live demo** preset finishes in about a minute on a laptop.")
        return
    try:
        record, progress = runs.get_run(run_id), runs.progress(run_id)
    except TransferLabError:
        st.session_state.pop(SELECTED, None)
        return
    head, stop = st.columns([5, 1], vertical_alignment="center")
    head.markdown(f"#### {record.name} · `{record.status}`")
    head.caption(f"{record.regime} · {record.backbone} · {record.config.data.source} · {record.device or describe_device()}"
                 + (f" · trainable {record.trainable_params:,} of {record.total_params:,} parameters"
                    if record.total_params else ""))
    if record.is_active and stop.button("Stop", icon=":material/stop_circle:", key="train_stop", type="primary"):
        runs.request_stop(run_id)
        st.toast("Stopping after the current batch; the last checkpoint is kept.")
    if record.status == runs.QUEUED:
        st.info(f"Queued: position {progress.queue_position} in line. It starts when the run ahead finishes.")
    elif record.status == runs.RUNNING:
        elapsed = time.time() - (record.started_at or time.time())
        remaining = elapsed * (1 - progress.fraction) / progress.fraction if progress.fraction > 0.02 else None
        batches = f" · batch {progress.batch}/{progress.batches}" if progress.batches else ""
        st.progress(progress.fraction, text=(
            f"{progress.phase.capitalize()} · epoch {max(progress.epoch, 1)} of {progress.epochs}{batches} · "
            f"{fmt_duration(elapsed)} elapsed · ~{fmt_duration(remaining)} left"))
    elif record.status == runs.FAILED:
        st.error(f"This run failed: {record.error}")
    elif record.status in (runs.STOPPED, runs.INTERRUPTED):
        st.warning(f"This run was {record.status} after {record.epochs_done} epoch(s)."
                   + (" It can be resumed from its last checkpoint (Runs tab)." if record.can_resume else ""))
    epochs = runs.epochs(run_id)
    if epochs:
        last = epochs[-1]
        tiles = st.columns(4)
        tiles[0].metric("Validation accuracy", f"{last.val_accuracy:.3f}" if last.val_accuracy is not None else "–")
        tiles[1].metric("Top-5 validation", f"{last.val_top5_accuracy:.3f}" if last.val_top5_accuracy is not None else "–")
        tiles[2].metric("Validation loss", f"{last.val_loss:.3f}" if last.val_loss is not None else "–")
        tiles[3].metric("Epochs done", f"{len(epochs)} of {record.epochs_planned}")
        st.plotly_chart(figures.training_curves(epochs, offset=epoch_offset(record)), key="train_live_chart")
    elif record.is_active:
        st.caption("The charts appear after the first epoch.")


def epoch_offset(record) -> int:
    """A fine-tune run's curve continues after its parent's epochs."""
    if not record.parent_id:
        return 0
    try:
        return runs.get_run(record.parent_id).epochs_done
    except TransferLabError:
        return 0


# ------------------------------------------------------------------------------ launch form

def launch_form() -> None:
    regime = st.segmented_control("Regime", list(REGIMES), default=models.DEFAULT_REGIME, key="train_regime",
                                  format_func=lambda name: REGIMES[name].label) or models.DEFAULT_REGIME
    defaults = REGIMES[regime]
    st.caption(defaults.description)
    with st.expander("What to look for", expanded=False):
        st.markdown(TEACHING[regime])
    demo = st.toggle("Live demo preset: the demo dataset at 96 px, 5 epochs, about a minute on a 2-core CPU",
                     key="train_live_demo", disabled=regime != "frozen",
                     help="For showing a whole run in class. Uses a subset of the demo shapes, not the Data page's choice.")
    demo = demo and regime == "frozen"
    data_config = LIVE_DEMO["data"] if demo else state.data_config()
    augment_config = state.augment_config()
    cols = st.columns(2)
    cols[0].markdown(f"**Data:** {data_config.summary()}" + (" *(live demo)*" if demo else ""))
    cols[0].page_link("app_pages/data.py", label="Change the data", icon=":material/photo_library:")
    cols[1].markdown(f"**Augmentation:** {augment_config.summary()}")
    cols[1].page_link("app_pages/augment.py", label="Change the augmentation", icon=":material/auto_awesome:")

    available = models.imagenet_weights_available(include_top=False)
    parents = runs.finetune_parents() if regime == "finetune" else []
    if regime == "finetune" and not parents:
        st.warning("Fine-tuning continues a finished frozen run, and there is none yet. Train a frozen run first.")
        return
    key = f"train_{regime}{'_demo' if demo else ''}"
    with st.form(f"{key}_form", border=True):
        name = st.text_input("Run name (optional)", key=f"{key}_name")
        parent_id = None
        if regime == "finetune":
            parent_id = st.selectbox(
                "Frozen run to fine-tune", [p.id for p in parents], key=f"{key}_parent",
                format_func=lambda pid: next(f"{p.name} (best val. accuracy {p.best_val_accuracy or 0:.3f})"
                                             for p in parents if p.id == pid))
            backbone = runs.get_run(parent_id).backbone
        else:
            default_backbone = models.default_backbone()
            backbone = st.selectbox("Backbone", list(BACKBONES), index=list(BACKBONES).index(default_backbone),
                                    format_func=lambda n: weights_label(n, available), key=f"{key}_backbone")
        c1, c2, c3 = st.columns(3)
        image_size = c1.number_input("Image size (pixels, 0 = the backbone's own)", min_value=0, max_value=600,
                                     value=LIVE_DEMO["image_size"] if demo else 0, step=8, key=f"{key}_size",
                                     disabled=regime == "finetune")
        epochs = c2.number_input("Epochs", min_value=1, max_value=500, value=LIVE_DEMO["epochs"] if demo else defaults.epochs,
                                 key=f"{key}_epochs")
        batch_size = c3.number_input("Batch size", min_value=1, max_value=4096,
                                     value=LIVE_DEMO["batch_size"] if demo else 64, key=f"{key}_batch")
        c4, c5, c6 = st.columns(3)
        default_lr = LIVE_DEMO["learning_rate"] if demo else defaults.learning_rate
        learning_rate = c4.number_input("Learning rate", min_value=0.0, value=default_lr, format="%.0e",
                                        step=default_lr / 10, key=f"{key}_lr")
        weight_decay = c5.number_input("Weight decay (0 = none)", min_value=0.0, value=defaults.weight_decay,
                                       format="%g", step=0.001, key=f"{key}_wd")
        if regime == "scratch":
            weights = "none"
            c6.text_input("Starting weights", value="random (from scratch)", disabled=True, key=f"{key}_weights_fixed")
        elif regime == "frozen":
            choice = c6.selectbox("Starting weights", ["imagenet", "none"], key=f"{key}_weights",
                                  format_func={"imagenet": "ImageNet (pretrained)", "none": "random (no pretraining)"}.get)
            weights = choice
        else:
            weights = None
            c6.text_input("Starting weights", value="the frozen run's model", disabled=True, key=f"{key}_weights_fixed")
        train_defaults = TrainConfig()
        feature_cache, cached_views = train_defaults.feature_cache, train_defaults.cached_views
        if regime == "frozen":
            g1, g2 = st.columns(2)
            feature_cache = forms.render_field(forms.field_named(TrainConfig, "feature_cache"), train_defaults,
                                               key, g1)
            cached_views = forms.render_field(forms.field_named(TrainConfig, "cached_views"), train_defaults, key, g2)
        unfreeze_top, from_block = 20, None
        if regime == "finetune":
            f1, f2 = st.columns(2)
            unfreeze_top = f1.number_input("Layers to unfreeze (from the top)", min_value=1, max_value=1000, value=20,
                                           key=f"{key}_unfreeze")
            block = f2.selectbox("…or unfreeze whole blocks from", ["(use the layer count)", 1, 2, 3, 4, 5, 6, 7],
                                 key=f"{key}_from_block")
            from_block = None if isinstance(block, str) else block
        st.caption(f"Runs on: **{describe_device()}** (jit_compile stays off on a CPU, where XLA is ~8x slower).")
        submitted = st.form_submit_button("Launch", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return
    try:
        config = RunConfig(
            name=name,
            data=data_config,
            augment=augment_config,
            model=ModelConfig(backbone=backbone, regime=regime, weights=weights, image_size=image_size or None,
                              unfreeze_top_layers=unfreeze_top, unfreeze_from_block=from_block,
                              parent_run_id=parent_id),
            train=TrainConfig(epochs=int(epochs), batch_size=int(batch_size), learning_rate=learning_rate,
                              weight_decay=weight_decay, feature_cache=bool(feature_cache),
                              cached_views=int(cached_views)),
        )
        preflight.check_run(config)
        run_id = runs.start_run(config)
    except TransferLabError as error:
        st.error(str(error))
        return
    st.session_state[SELECTED] = run_id
    st.toast(f"Launched {config.display_name()}")
    st.rerun()


# ------------------------------------------------------------------------------ runs and comparison

def runs_tab() -> None:
    records = runs.list_runs()
    if not records:
        st.info("Runs you launch appear here.")
        return
    rows = [{
        "name": r.name, "regime": r.regime, "backbone": r.backbone, "dataset": r.config.data.source,
        "status": r.status, "best val. accuracy": r.best_val_accuracy,
        "duration": fmt_duration((r.finished_at or time.time()) - r.started_at if r.started_at else None),
        "trainable / total parameters": f"{r.trainable_params:,} / {r.total_params:,}" if r.total_params else "–",
    } for r in records]
    st.dataframe(rows, hide_index=True, key="train_runs_table",
                 column_config={"best val. accuracy": st.column_config.NumberColumn(format="%.3f")})
    by_id = {r.id: r for r in records}
    finished = [r.id for r in records if r.epochs_done][:3]
    overlay = st.multiselect("Overlay the curves of", list(by_id), default=finished, key="train_compare",
                             format_func=lambda rid: run_label(by_id[rid]),
                             help="Scratch vs frozen vs fine-tune on the same axes: the lesson of the notebook.")
    if overlay:
        st.plotly_chart(figures.compare_runs([(run_label(by_id[r]), runs.epochs(r), epoch_offset(by_id[r])) for r in overlay]),
                        key="train_compare_chart")
    record = by_id[st.selectbox("Run", list(by_id), format_func=lambda rid: run_label(by_id[rid]), key="train_action_run")]
    actions = st.columns(5)
    if actions[0].button("Watch live", key="train_watch", icon=":material/monitoring:"):
        st.session_state[SELECTED] = record.id
        st.rerun()
    if record.can_resume and actions[1].button("Resume", key="train_resume", icon=":material/replay:"):
        try:
            runs.resume_run(record.id)
            st.session_state[SELECTED] = record.id
            st.rerun()
        except TransferLabError as error:
            st.error(str(error))
    model_path = record.best_model or record.last_model
    if model_path:
        actions[2].download_button("Model (.keras)", model_path.read_bytes(), file_name=f"{record.id}.keras",
                                   key="train_download_model", icon=":material/download:")
    actions[3].download_button("Metrics (.csv)", export.metrics_csv(record.id), file_name=f"{record.id}-metrics.csv",
                               mime="text/csv", key="train_download_metrics", icon=":material/table:")
    actions[4].download_button("Config (.json)", record.config_json, file_name=f"{record.id}-config.json",
                               mime="application/json", key="train_download_config", icon=":material/settings:")
    with st.popover("Delete this run", icon=":material/delete:"):
        st.write(f"Delete **{record.name}** with its models and logs? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key="train_delete_confirm"):
            try:
                runs.delete_run(record.id)
            except TransferLabError as error:
                st.error(str(error))
            else:
                st.session_state.pop(SELECTED, None)
                st.rerun()


# ------------------------------------------------------------------------------ hyperparameter grid

def grid_tab() -> None:
    st.markdown("The notebook's table of validation accuracy for each learning rate and weight decay, as a "
                "feature: one frozen run per cell, queued and run one after another on the current data.")
    c1, c2 = st.columns(2)
    lrs = c1.multiselect("Learning rates", [1e-2, 1e-3, 1e-4, 1e-5], default=[1e-2, 1e-3, 1e-4], key="train_grid_lrs",
                         format_func=lambda v: f"{v:.0e}")
    wds = c2.multiselect("Weight decays (0 = none)", [0.0, 0.001, 0.01, 0.1], default=[0.0, 0.01], key="train_grid_wds")
    c3, c4, c5 = st.columns(3)
    epochs = c3.number_input("Epochs per cell", min_value=1, max_value=100, value=3, key="train_grid_epochs")
    image_size = c4.number_input("Image size (0 = the backbone's own)", min_value=0, max_value=600, value=96, step=8,
                                 key="train_grid_size")
    backbone = c5.selectbox("Backbone", list(BACKBONES), index=list(BACKBONES).index(models.default_backbone()),
                            key="train_grid_backbone")
    st.caption(f"Data: **{state.data_config().summary()}** · augmentation: **{state.augment_config().summary()}**")
    if st.button(f"Queue {len(lrs) * len(wds)} runs", key="train_grid_launch", icon=":material/grid_view:"):
        try:
            base = RunConfig(data=state.data_config(), augment=state.augment_config(),
                             model=ModelConfig(backbone=backbone, regime="frozen", image_size=image_size or None),
                             train=TrainConfig(epochs=int(epochs), batch_size=32))
            preflight.check_run(base)
            st.session_state["train_grid_shown"] = grid.launch_grid(base, lrs, wds)
        except TransferLabError as error:
            st.error(str(error))
    ids = grid.grid_ids()
    if not ids:
        return
    shown = st.selectbox("Grid", ids, key="train_grid_pick",
                         index=ids.index(st.session_state.get("train_grid_shown", ids[0])) if st.session_state.get("train_grid_shown") in ids else 0)
    grid_results(shown)


@st.fragment(run_every=2)
def grid_results(grid_id: str) -> None:
    cells = grid.grid_cells(grid_id)
    done = sum(c.status == runs.COMPLETED for c in cells)
    st.progress(done / len(cells) if cells else 0.0, text=f"{done} of {len(cells)} cells finished")
    table = grid.grid_table(cells)
    st.dataframe(table.style.highlight_max(axis=None, color="#bbf7d0").format("{:.3f}", na_rep="…"),
                 key=f"train_grid_table_{grid_id}")


# ------------------------------------------------------------------------------ the page

st.title("Train")
runs.reconcile()
live_panel()
launch, compare, hyper = st.tabs(["Launch", "Runs & comparison", "Hyperparameter grid"])
with launch:
    launch_form()
with compare:
    runs_tab()
with hyper:
    grid_tab()
