"""Train: launch the notebook's three regimes, watch them live, stop, queue and compare them."""

import functools
import time

import streamlit as st

from core import catalog, classroom, export, figures, grid, preflight, runs
from core.catalog import BACKBONES, REGIMES
from core.config import ModelConfig, RunConfig, TrainConfig, format_log_step, live_demo_preset
from core.devices import describe_device
from core.errors import TransferLabError
from core.machine_defaults import MachineDefaults, this_machine
from dashboard import forms, learners, state
from dashboard.export_panel import export_panel
from dashboard.messages import literal, show_error

STATUS_BADGES = {  # (colour, icon): a failed run must not look like a completed one
    runs.QUEUED: ("gray", ":material/schedule:"),
    runs.RUNNING: ("blue", ":material/play_circle:"),
    runs.COMPLETED: ("green", ":material/check_circle:"),
    runs.STOPPED: ("orange", ":material/stop_circle:"),
    runs.FAILED: ("red", ":material/error:"),
    runs.INTERRUPTED: ("violet", ":material/warning:"),
}
STATUS_MARKS = {
    runs.QUEUED: "⏳",
    runs.RUNNING: "▶️",
    runs.COMPLETED: "✅",
    runs.STOPPED: "⏹️",
    runs.FAILED: "❌",
    runs.INTERRUPTED: "⚠️",
}
WEIGHT_NAMES = {"imagenet": "ImageNet (pretrained)", "none": "random (no pretraining)"}
GRID_START = {"model": {"image_size": 96}, "train": {"epochs": 3}}  # a grid cell is short: many run in a row
TABS = ("Launch", "Runs & comparison", "Hyperparameter grid")
TAB_KEY = "train_tab"


IDLE_REFRESH_S = 10.0  # nothing queued or training: a refresh only notices a run launched elsewhere
CHART_REFRESH_S = 4.0  # a run's curves change once an epoch


def any_run_active() -> bool:
    """Whether a run in the store is queued or training (the runs table, the comparison and a grid follow them)."""
    return any(r.is_active for r in store_runs(runs.stamp()))


def refreshing(seconds: float, tab: str | None = None, activity=any_run_active, idle: float | None = IDLE_REFRESH_S):
    """``st.fragment`` for a fragment that follows the run store: it refreshes every ``seconds`` while
    ``activity()`` is truthy and every ``idle`` seconds while it is not (``None``: not at all, for a fragment
    that another one on the page watches for it); when ``activity()`` changes (a run starts or ends), the page
    reruns, so the pace follows it. One in a tab refreshes only while its tab is open (switching tabs reruns the
    page). A class of thirty on this page asked for twenty refreshes a second at a fixed 1.5 s, most of them
    while nothing changed, and each refresh costs a browser ~0.1 CPU-s whatever it redraws."""

    def decorate(body):
        @functools.wraps(body)
        def follow(*args, **kwargs):
            started = kwargs.pop("_activity")
            body(*args, **kwargs)
            if activity() != started:
                st.rerun()

        @functools.wraps(body)
        def fragment(*args, **kwargs):
            if tab is not None and st.session_state.get(TAB_KEY, TABS[0]) != tab:
                return st.fragment(body)(*args, **kwargs)
            started = activity()
            every = seconds if started else idle
            return st.fragment(follow, run_every=every)(*args, _activity=started, **kwargs)

        return fragment

    return decorate


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
    return f"{record.name} · {time.strftime('%d %b %H:%M', time.localtime(record.created_at))}"


def status_badge(record) -> None:
    colour, icon = STATUS_BADGES.get(record.status, ("gray", None))
    st.badge(record.status, color=colour, icon=icon)


def watched_run_id() -> str | None:
    """The run this browser watches; by default the one training now, else the newest (in a class: the
    learner's own, training or newest)."""
    chosen = state.watched_run()
    if chosen:
        return chosen
    learner = state.learner()
    records = store_runs(runs.stamp(), learner.name if learner else None)
    active = next((r for r in records if r.status == runs.RUNNING), None) or next(iter(records), None)
    return active.id if active else None


@st.cache_data(show_spinner=False, max_entries=8)
def store_runs(stamp: tuple[int, ...], owner: str | None = None) -> list:
    """Every run (or one learner's), newest first: read once per change of the store (``runs.stamp``) for all
    the sessions."""
    return runs.list_runs(owner=owner)


@st.cache_data(show_spinner=False, max_entries=64)
def store_run(stamp: tuple[int, ...], run_id: str) -> tuple:
    """A run's record, progress and epochs, read once per change of the store for all the sessions watching it;
    RunError (not cached) when it was deleted."""
    return runs.get_run(run_id), runs.progress(run_id), runs.epochs(run_id)


@st.cache_resource(show_spinner=False, max_entries=32)
def curves_figure(epochs: tuple, offset: int) -> object:
    """One run's curves, built once per new epoch for every session watching it (building the figure was a third
    of a live-panel refresh); shared, not copied: ``st.plotly_chart`` only reads it."""
    return figures.training_curves(list(epochs), offset=offset)


@st.cache_resource(show_spinner=False, max_entries=32)
def compare_figure(curves: tuple) -> object:
    """Several runs' curves (``(name, epochs, offset)`` each), built once per change for every session."""
    return figures.compare_runs([(name, list(epochs), offset) for name, epochs, offset in curves])


# ------------------------------------------------------------------------------ live panel


def watched_run_active() -> bool:
    """The live panel's pace: whether the run it shows is queued or training."""
    run_id = watched_run_id()
    try:
        return run_id is not None and store_run(runs.stamp(), run_id)[0].is_active
    except TransferLabError:
        return False


@refreshing(1.5, activity=watched_run_active)
def live_panel() -> None:
    run_id = watched_run_id()
    if run_id is None:
        st.info("No runs yet. Launch one below: the **live demo** preset finishes in about a minute on a laptop.")
        return
    try:
        record, progress, epochs = store_run(runs.stamp(), run_id)
    except TransferLabError:
        state.watch_run(None)  # deleted meanwhile (another tab): show the default next time
        return
    head, badge, stop = st.columns([6, 1, 1], vertical_alignment="center")
    learner = state.learner()
    whose = (
        f" · {literal(learners.owner_label(record.owner))}'s run" if learner and not learner.owns(record.owner) else ""
    )
    head.markdown(f"#### {literal(record.name)}{whose}")
    with badge:
        status_badge(record)
    head.caption(
        f"{record.regime} · {record.backbone} · {record.config.data.summary()} · "
        f"{record.device or describe_device()}"
        + (
            f" · trainable {record.trainable_params:,} of {record.total_params:,} parameters"
            if record.total_params
            else ""
        )
    )
    may_stop = record.is_active and learners.may_change(learner, record.owner)
    if may_stop and stop.button("Stop", icon=":material/stop_circle:", key="train_stop", type="primary"):
        runs.request_stop(run_id, learner)
        st.toast("Stopping: within a batch while training, at once while the data is prepared.")
    if record.status == runs.QUEUED:
        st.info(f"Queued: position {progress.queue_position} in line. It starts when the run ahead finishes.")
    elif record.status == runs.RUNNING:
        elapsed = time.time() - (record.started_at or time.time())
        remaining = progress.seconds_left(epochs, record.started_at)
        batches = f" · batch {progress.batch}/{progress.batches}" if progress.batches else ""
        left = f" · ~{fmt_duration(remaining)} left" if remaining is not None else ""
        stopping = " · stopping…" if record.stop_requested else ""
        st.progress(
            progress.fraction,
            text=(
                f"{progress.phase.capitalize()} · epoch {max(progress.epoch, 1)} of {progress.epochs}{batches} · "
                f"{fmt_duration(elapsed)} elapsed{left}{stopping}"
            ),
        )
    elif record.status == runs.FAILED:
        show_error(f"This run failed: {record.error}", icon=":material/error:")
    elif record.status in (runs.STOPPED, runs.INTERRUPTED):
        st.warning(stopped_message(record))


@refreshing(CHART_REFRESH_S, activity=watched_run_active, idle=None)
def live_results() -> None:
    """The watched run's finished epochs, its last metrics and its curves, in a fragment of their own that
    refreshes less often than the progress above: they change once an epoch, and the figure was most of what a
    refresh sent to each browser. The tiles refresh with the curves, so "Epochs done" always counts the points
    drawn. While the run is not training nothing refreshes them: the panel above notices when it starts and
    reruns the page."""
    run_id = watched_run_id()
    if run_id is None:
        return
    try:
        record, _, epochs = store_run(runs.stamp(), run_id)
    except TransferLabError:
        return
    if not epochs:
        if record.is_active:
            st.caption("The charts appear after the first epoch.")
        return
    last = epochs[-1]
    tiles = st.columns(4)
    tiles[0].metric("Validation accuracy", f"{last.val_accuracy:.3f}" if last.val_accuracy is not None else "–")
    tiles[1].metric("Top-5 validation", f"{last.val_top5_accuracy:.3f}" if last.val_top5_accuracy is not None else "–")
    tiles[2].metric("Validation loss", f"{last.val_loss:.3f}" if last.val_loss is not None else "–")
    tiles[3].metric("Epochs done", f"{len(epochs)} of {record.epochs_planned}")
    st.plotly_chart(curves_figure(tuple(epochs), epoch_offset(record)), key="train_live_chart")


def stopped_message(record) -> str:
    message = f"This run was {record.status} after {record.epochs_done} epoch(s)."
    if record.status == runs.INTERRUPTED and record.error:
        message = record.error
    if not record.can_resume:
        return message
    if record.epochs_done == 0:
        return message + " It saved no checkpoint yet: Resume (Runs tab) starts it again from the first epoch."
    return message + f" Resume (Runs tab) continues from its checkpoint after epoch {record.epochs_done}."


def epoch_offset(record) -> int:
    """A fine-tune run's curve continues after its parent's epochs."""
    if not record.parent_id:
        return 0
    try:
        return store_run(runs.stamp(), record.parent_id)[0].epochs_done
    except TransferLabError:
        return 0


# ------------------------------------------------------------------------------ launch form


def parent_choice(parents: list) -> str:
    """The frozen run to fine-tune: by default the one being watched, else the newest."""
    by_id = {p.id: p for p in parents}
    watched = watched_run_id()
    default = watched if watched in by_id else parents[0].id
    return st.selectbox(
        "Frozen run to fine-tune",
        list(by_id),
        index=list(by_id).index(default),
        key="train_finetune_parent",
        format_func=lambda pid: f"{run_label(by_id[pid])} (best val. accuracy {by_id[pid].best_val_accuracy or 0:.3f})",
    )


def lesson(regime: str) -> str:
    """What to look for in a regime's run, from its catalog row."""
    row = REGIMES[regime]
    decay = f"weight decay {row.weight_decay:g}" if row.weight_decay else "no weight decay"
    return (
        f"**What is trained:** {row.what_is_trained} "
        f"**Learning rate:** {format_log_step(row.learning_rate)} ({decay}): {row.learning_rate_reason} "
        f"**Watch for (exercise {row.exercise}):** {row.watch_for}"
    )


def form_start(regime: str, parent, demo: dict | None) -> tuple[ModelConfig, TrainConfig]:
    """What the form shows before anyone changes it: the regime's defaults, the frozen run's network for a
    fine-tune, the live demo's values when it is on."""
    row = REGIMES[regime]
    model = ModelConfig(
        backbone=parent.backbone if parent else catalog.default_backbone(),
        regime=regime,
        weights=row.weights,
        image_size=parent.config.model.image_size if parent else None,
        parent_run_id=parent.id if parent else None,
    )
    train = TrainConfig(epochs=row.epochs, learning_rate=row.learning_rate, weight_decay=row.weight_decay)
    if demo:
        model, train = model.replace(**demo["model"]), train.replace(**demo["train"])
    return model, train


def launch_form() -> None:
    regime = (
        forms.render(ModelConfig(), "regime", "train", buttons=True, format_func=lambda name: REGIMES[name].label)
        or catalog.DEFAULT_REGIME
    )
    st.caption(REGIMES[regime].description)
    with st.expander("What to look for", expanded=False):
        st.markdown(lesson(regime))
    parent = None
    learner = state.learner()
    if regime == "finetune":
        parents = runs.finetune_parents(owner=learner.name if learner else None)
        if not parents:
            st.warning("Fine-tuning continues a finished frozen run, and there is none yet. Train a frozen run first.")
            return
        parent = runs.get_run(parent_choice(parents))
        base = runs.finetune_config(parent.id)
        data_config, augment_config = base.data, base.augment
        demo = None
    else:
        demo_data, preset = live_demo_preset(state.data_config())
        own = demo_data.kind == "local"
        on = st.toggle(
            f"Live demo preset: {f'your dataset {demo_data.location!r}' if own else 'the demo dataset'} at "
            f"{preset['model']['image_size']} px, {preset['train']['epochs']} epochs, about a minute on a 2-core CPU",
            key="train_live_demo",
            disabled=regime != "frozen",
            help="For showing a whole run in class. On a dataset made on the Data page it trains on that dataset; "
            "otherwise on a subset of the demo shapes, not the Data page's choice.",
        )
        demo = preset if on and regime == "frozen" else None
        data_config = demo_data if demo else state.data_config()
        augment_config = state.augment_config()
    cols = st.columns(2)
    if parent is not None:
        cols[0].markdown(f"**Data:** {data_config.summary()} *(the frozen run's: a fine-tune continues on it)*")
        cols[1].markdown(f"**Augmentation:** {augment_config.summary()} *(the frozen run's)*")
    else:
        cols[0].markdown(f"**Data:** {data_config.summary()}" + (" *(live demo)*" if demo else ""))
        cols[0].page_link("app_pages/data.py", label="Change the data", icon=":material/photo_library:")
        cols[1].markdown(f"**Augmentation:** {augment_config.summary()}")
        cols[1].page_link("app_pages/augment.py", label="Change the augmentation", icon=":material/auto_awesome:")

    model, train = form_start(regime, parent, demo)
    available = catalog.imagenet_weights_available(include_top=False)
    key = f"train_{regime}{'_demo' if demo else ''}{'_own' if demo and data_config.kind == 'local' else ''}"
    with st.form(f"{key}_form", border=True):
        name = forms.render(RunConfig(), "name", key)
        if parent is not None:
            backbone, image_size = model.backbone, model.image_size
            st.text_input(
                "Backbone and image size",
                disabled=True,
                key=f"{key}_network_{parent.id}",
                value=f"{backbone} · {model.effective_image_size} px (the frozen "
                "run's: a fine-tune continues its network)",
            )
        else:
            backbone = forms.render(model, "backbone", key, format_func=lambda n: weights_label(n, available))
        c1, c2, c3 = st.columns(3)
        if parent is None:
            image_size = forms.render(model, "image_size", key, c1, key=f"{key}_size", placeholder="the backbone's own")
        epochs = forms.render(train, "epochs", key, c2)
        machine = this_machine()
        batch_size = forms.render(
            train,
            "batch_size",
            key,
            c3,
            key=f"{key}_batch",
            placeholder=f"{machine.batch_size(regime)} on {machine.where()}",
        )
        c4, c5, c6 = st.columns(3)
        learning_rate = forms.render(train, "learning_rate", key, c4, key=f"{key}_lr")
        weight_decay = forms.render(train, "weight_decay", key, c5, key=f"{key}_wd")
        weights = model.weights
        if regime == "frozen":
            weights = forms.render(model, "weights", key, c6, choices=list(WEIGHT_NAMES), format_func=WEIGHT_NAMES.get)
        else:
            c6.text_input(
                forms.label(ModelConfig, "weights"),
                disabled=True,
                key=f"{key}_weights_fixed",
                value="random (from scratch)" if regime == "scratch" else "the frozen run's model",
            )
        feature_cache, cached_views = train.feature_cache, train.cached_views
        if regime == "frozen":
            g1, g2 = st.columns(2)
            feature_cache = forms.render(train, "feature_cache", key, g1)
            cached_views = forms.render(train, "cached_views", key, g2)
        unfreeze_top, from_block = model.unfreeze_top_layers, model.unfreeze_from_block
        if regime == "finetune":
            f1, f2 = st.columns(2)
            unfreeze_top = forms.render(model, "unfreeze_top_layers", key, f1, key=f"{key}_unfreeze")
            from_block = forms.render(
                model, "unfreeze_from_block", key, f2, key=f"{key}_from_block", placeholder="use the layer count"
            )
        precision = forms.render(
            train,
            "mixed_precision",
            key,
            st.columns(3)[0],
            key=f"{key}_precision",
            format_func=lambda choice: precision_label(choice, machine),
        )
        st.caption(f"Runs on: **{describe_device()}**. {machine_note(machine)}")
        if learner is not None and not learner.instructor:
            st.caption(f"Class limits: {classroom.limits().summary()}.")
        submitted = st.form_submit_button("Launch", type="primary", icon=":material/play_arrow:")
    if not submitted:
        return
    try:
        config = RunConfig(
            name=name,
            data=data_config,
            augment=augment_config,
            model=model.replace(
                backbone=backbone,
                weights=weights,
                image_size=image_size,
                unfreeze_top_layers=unfreeze_top,
                unfreeze_from_block=from_block,
            ),
            train=train.replace(
                epochs=epochs,
                batch_size=batch_size,
                mixed_precision=precision,
                learning_rate=learning_rate,
                weight_decay=weight_decay,
                feature_cache=feature_cache,
                cached_views=cached_views,
            ),
        )
        preflight.check_run(config)
        run_id = runs.start_run(config, learner)
    except TransferLabError as error:
        show_error(error)
        return
    state.watch_run(run_id)
    st.toast(f"Launched {config.display_name()}")
    st.rerun()


def precision_label(choice: str, machine: MachineDefaults) -> str:
    """'auto (mixed float16 on this GPU)': the automatic choice names what it means here."""
    if choice == "auto":
        return f"auto ({machine.mixed_precision.replace('_', ' ')} on {machine.where()})"
    return choice.replace("_", " ")


def machine_note(machine: MachineDefaults) -> str:
    """What the machine chose for the settings left empty, and why (``core.machine_defaults``)."""
    if not machine.on_gpu:
        return "Defaults on a CPU: batch 32, no mixed precision, jit_compile off (XLA is ~8x slower here)."
    return (
        f"Defaults on {machine.device} ({machine.strategy}): batch {machine.batch_size('scratch')} from scratch and "
        f"{machine.batch_size('frozen')} frozen or fine-tune, {machine.mixed_precision} ({machine.why}), "
        "jit_compile auto."
    )


# ------------------------------------------------------------------------------ runs and comparison


def runs_rows(records: list, with_learner: bool = False) -> list[dict]:
    """One row per run, narrow enough for the page; nothing shows as 'None'. In a class's whole-class view,
    each row names its learner."""
    return [
        {
            **({"learner": learners.owner_label(r.owner)} if with_learner else {}),
            "run": run_label(r),
            "regime": r.regime,
            "data": r.config.data.summary(),
            "status": f"{STATUS_MARKS.get(r.status, '')} {r.status}",
            "epochs": f"{r.epochs_done} / {r.epochs_planned}",
            "best val. acc.": f"{r.best_val_accuracy:.3f}" if r.best_val_accuracy is not None else "–",
            "time": fmt_duration((r.finished_at or time.time()) - r.started_at if r.started_at else None),
        }
        for r in records
    ]


def runs_tab() -> None:
    """The table, the overlaid curves and the buttons follow the store like the live panel (fragments that
    refresh); the pickers stay outside them, so a refresh never closes a list someone is choosing from. In a
    class it lists the learner's own runs, or the whole class's one click away."""
    owner = learners.scope(state.learner(), "train_scope")
    records = store_runs(runs.stamp(), owner)
    if not records:
        runs_table(owner)
        return
    by_id = {r.id: r for r in records}
    runs_table(owner)
    if any(rid not in by_id for rid in st.session_state.get("train_compare", [])):  # deleted in another tab
        st.session_state["train_compare"] = [rid for rid in st.session_state["train_compare"] if rid in by_id]
    st.multiselect(
        "Overlay the curves of",
        list(by_id),
        key="train_compare",
        format_func=lambda rid: run_label(by_id[rid]),
        placeholder="The three newest runs with curves (pick runs to compare others)",
        help="Scratch vs frozen vs fine-tune on the same axes: the lesson of the notebook.",
    )
    compare_chart(owner)
    if st.session_state.get("train_action_run") not in by_id:  # first time, or its run was deleted
        watched = watched_run_id()
        st.session_state["train_action_run"] = watched if watched in by_id else records[0].id
    chosen = st.selectbox("Run", list(by_id), format_func=lambda rid: run_label(by_id[rid]), key="train_action_run")
    run_actions(chosen)
    export_panel(chosen)
    if learners.may_change(state.learner(), by_id[chosen].owner):
        delete_button(by_id[chosen])


@refreshing(2.0, tab=TABS[1])
def runs_table(owner: str | None = None) -> None:
    records = store_runs(runs.stamp(), owner)
    if not records:
        st.info("Runs you launch appear here.")
        return
    st.dataframe(
        runs_rows(records, with_learner=owner is None and state.learner() is not None),
        hide_index=True,
        key="train_runs_table",
        width="stretch",
        column_config={
            "run": st.column_config.TextColumn(width="medium"),
            "epochs": st.column_config.TextColumn(width="small"),
            "time": st.column_config.TextColumn(width="small"),
        },
    )


@refreshing(2.0, tab=TABS[1])
def compare_chart(owner: str | None = None) -> None:
    """The picked runs' curves, or the three newest runs with curves: never an empty chart while runs have some."""
    stamp = runs.stamp()
    by_id = {r.id: r for r in store_runs(stamp, owner)}
    picked = [rid for rid in st.session_state.get("train_compare", []) if rid in by_id]
    overlay = picked or [rid for rid, r in by_id.items() if r.epochs_done][:3]
    if overlay:
        curves = tuple((run_label(by_id[r]), tuple(store_run(stamp, r)[2]), epoch_offset(by_id[r])) for r in overlay)
        st.plotly_chart(compare_figure(curves), key="train_compare_chart")


@refreshing(2.0, tab=TABS[1])
def run_actions(run_id: str) -> None:
    """What the chosen run allows now: Resume appears when it stops, the model once an epoch has saved it."""
    try:
        record = store_run(runs.stamp(), run_id)[0]
    except TransferLabError:
        return
    actions = st.columns(5)
    if actions[0].button("Watch live", key="train_watch", icon=":material/monitoring:"):
        state.watch_run(record.id)
        st.rerun(scope="app")
    learner = state.learner()
    may_resume = record.can_resume and learners.may_change(learner, record.owner)
    if may_resume and actions[1].button("Resume", key="train_resume", icon=":material/replay:"):
        try:
            runs.resume_run(record.id, learner)
        except TransferLabError as error:
            show_error(error)
        else:
            state.watch_run(record.id)
            st.rerun(scope="app")
    stem = export.download_stem(record)
    model_path = record.model_path
    if model_path:  # read only when clicked: a model is tens of MB
        actions[2].download_button(
            "Model (.keras)",
            model_path.read_bytes,
            file_name=f"{stem}.keras",
            key="train_download_model",
            icon=":material/download:",
            on_click="ignore",
        )
    actions[3].download_button(
        "Metrics (.csv)",
        lambda: export.metrics_csv(record.id),
        file_name=f"{stem}-metrics.csv",
        mime="text/csv",
        key="train_download_metrics",
        icon=":material/table:",
        on_click="ignore",
    )
    actions[4].download_button(
        "Config (.json)",
        record.config_json,
        file_name=f"{stem}-config.json",
        mime="application/json",
        key="train_download_config",
        icon=":material/settings:",
        on_click="ignore",
    )


def delete_button(record) -> None:
    with st.popover("Delete this run", icon=":material/delete:"):
        st.write(f"Delete **{record.name}** with its models and logs? This cannot be undone.")
        if st.button("Yes, delete it", type="primary", key="train_delete_confirm"):
            try:
                runs.delete_run(record.id, state.learner())
            except TransferLabError as error:
                show_error(error)
            else:
                if state.watched_run() == record.id:
                    state.watch_run(None)
                st.rerun()


# ------------------------------------------------------------------------------ hyperparameter grid


def grid_tab() -> None:
    st.markdown(
        "The notebook's table of validation accuracy for each learning rate and weight decay, as a "
        "feature: one frozen run per cell, queued and run one after another on the current data."
    )
    c1, c2 = st.columns(2)
    lrs = c1.multiselect(
        "Learning rates",
        [1e-2, 1e-3, 1e-4, 1e-5],
        default=[1e-2, 1e-3, 1e-4],
        key="train_grid_lrs",
        format_func=format_log_step,
    )
    wds = c2.multiselect("Weight decays (0 = none)", [0.0, 0.001, 0.01, 0.1], default=[0.0, 0.01], key="train_grid_wds")
    c3, c4, c5 = st.columns(3)
    model = ModelConfig(backbone=catalog.default_backbone(), regime="frozen", **GRID_START["model"])
    train = TrainConfig(**GRID_START["train"])
    epochs = forms.render(train, "epochs", "train_grid", c3)
    image_size = forms.render(
        model, "image_size", "train_grid", c4, key="train_grid_size", placeholder="the backbone's own"
    )
    backbone = forms.render(model, "backbone", "train_grid", c5)
    st.caption(f"Data: **{state.data_config().summary()}** · augmentation: **{state.augment_config().summary()}**")
    if st.button(f"Queue {len(lrs) * len(wds)} runs", key="train_grid_launch", icon=":material/grid_view:"):
        try:
            base = RunConfig(
                data=state.data_config(),
                augment=state.augment_config(),
                model=model.replace(backbone=backbone, image_size=image_size),
                train=train.replace(epochs=epochs),
            )
            preflight.check_run(base)
            st.session_state["train_grid_shown"] = grid.launch_grid(base, lrs, wds, state.learner())
        except TransferLabError as error:
            show_error(error)
    learner = state.learner()
    ids = grid.grid_ids(owner=learner.name if learner else None)
    if not ids:
        return
    shown = st.session_state.pop("train_grid_shown", None)  # a grid just queued is shown once
    if shown in ids or st.session_state.get("train_grid_pick") not in ids:
        st.session_state["train_grid_pick"] = shown if shown in ids else ids[0]
    grid_results(st.selectbox("Grid", ids, key="train_grid_pick", format_func=grid.grid_label))


@refreshing(2.0, tab=TABS[2])
def grid_results(grid_id: str) -> None:
    cells = grid.grid_cells(grid_id)
    done = sum(c.status == runs.COMPLETED for c in cells)
    st.progress(done / len(cells) if cells else 0.0, text=f"{done} of {len(cells)} cells finished")
    st.caption("Best validation accuracy; rows: learning rate, columns: weight decay.")
    table = grid.grid_table(cells)
    st.dataframe(
        table.style.highlight_max(axis=None, color="#bbf7d0").format("{:.3f}", na_rep="…"),
        key=f"train_grid_table_{grid_id}",
    )


# ------------------------------------------------------------------------------ the page

st.title("Train")
runs.reconcile()
live_panel()
live_results()
launch, compare, hyper = st.tabs(TABS, key=TAB_KEY, on_change="rerun")
with launch:
    launch_form()
with compare:
    runs_tab()
with hyper:
    grid_tab()
