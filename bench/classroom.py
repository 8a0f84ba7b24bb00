"""Does the app hold a classroom? Thirty browser sessions on one server while a run trains.

1. Training alone: the Train page's live-demo run (``live_demo_preset`` on the demo set: a frozen run at 96 px,
   5 epochs, on the default backbone) is queued with ``core.runs.start_run`` in a fresh data directory and timed
   from launch to its end: ``train_alone_s``.
2. A real ``streamlit run dashboard/app.py`` (headless, 127.0.0.1, a free port) on a second fresh data directory,
   visited once by an untimed session (Augment, then Train) so that the class meets a started app: TensorFlow
   imported, the first preview drawn. The same run is queued there and the class arrives while it trains.
   Both runs start from empty feature and weights caches (a fresh data directory each), so they do the same work;
   the drawn demo set is shared by both (drawn before either is timed), so neither pays for drawing it.
   The training process is this script's child, not the server's, so the server's CPU time excludes it.
3. Under load: ``--sessions`` (30) Playwright browser contexts of one headless Debian chromium arrive over
   ``--arrival-s`` seconds and run at once (asyncio). Each opens the Augment page, moves one slider (focuses a
   slider thumb, presses ArrowRight; session i takes the i-th enabled slider, as a class moves different
   sliders), then clicks through to the Train page. Each of those three interactions counts from the action to
   *settled*: Streamlit's script state back to ``notRunning`` (``data-test-script-state`` on ``stApp``) with the
   expected elements on screen (the original and nine augmented images, new ones after the slider; the Train
   title). One that does not settle in 60 s, or that shows a Streamlit exception, is an error.
   Every session stays open, its Train page polling the run store, until all sessions are done and the run has
   finished, so the whole run trains beside the open class.
4. Server CPU: user + system time of the streamlit process (and of its reaped and live children) from
   ``/proc/<pid>/stat``, from the first session's arrival to the last session's last interaction, over the
   number of interactions (3 per session).

``--classroom`` serves the app in classroom mode (``TRANSFER_LAB_CLASSROOM=1``, as ``make run CLASSROOM=1``), the
mode the app offers a class: the run is the instructor's, and session i is learner ``learner-i`` (the name in the
address, as a refresh keeps it), whose Train page shows their own runs (none yet) and not the instructor's run.
Without it every session watches that run live, as one user's tabs would. ``--reduced-motion``: the browsers
prefer reduced motion (a setting of the learner's system), so pages that wait draw fewer animation frames on the
cores the server shares with them here; the server's work is the same.

Chromium runs at ``--browser-nice`` (19, the lowest priority), its process and its autogroup (Playwright gives the
browser a session of its own, and the kernel shares the CPU between sessions' groups before niceness counts): in
a classroom the browsers run on the learners' machines, not on the server; here they share its two cores, so they
yield to the server and the trainer instead of competing with them. Latencies still include the browsers' own
work on this box, so ``p95_ms`` overstates.

Prints one JSON line: ``sessions``, ``interactions``, ``p50_ms``, ``p95_ms``, ``errors``, ``server_cpu_s``,
``server_cpu_s_per_interaction``, ``train_alone_s``, ``train_loaded_s``, ``train_slowdown`` (and
``load_window_s``, ``browser_cpu_s`` (chromium's CPU in the window, the browsers' share of the box), ``driver_cpu_s``
(Playwright's node driver's), ``classroom``, ``reduced_motion``,
``train_status``). Goals on the 2-core CPU: 0 errors, at most 0.15 CPU seconds per
interaction, and the run completes with a slowdown of at most 2x.

Run: ``python -m bench.classroom`` (needs Debian's chromium; about four minutes; ``--sessions 10`` for fewer).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [  # as tests/e2e/conftest.py
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEYS = [  # the keys first
    "sessions", "interactions", "p50_ms", "p95_ms", "errors", "server_cpu_s", "server_cpu_s_per_interaction",
    "train_alone_s", "train_loaded_s", "train_slowdown",
]  # fmt: skip
SETTLE_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Runs in the page every 200 ms: settled once the script is not running and the expected picture is there.
# ``before`` is the image sources before a slider move: the new ones must differ (a rerun that was over
# between two polls is still seen).
SETTLED_JS = """
([want, before]) => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
  if (document.querySelector('[data-testid="stException"]')) return 'exception';
  const live = [...document.querySelectorAll('[data-testid="stImage"] img')]
    .filter((img) => !img.closest('[data-stale="true"]') && img.complete && img.naturalWidth > 0);
  if (want === 'augment') {
    if (live.length < 10) return false;
    return before === null || live.map((img) => img.src).join(' ') !== before;
  }
  const title = [...document.querySelectorAll('h1')].some((h) => h.textContent.trim() === want);
  return title && !document.querySelector('[data-stale="true"]');
}
"""
IMAGE_SOURCES_JS = """
() => [...document.querySelectorAll('[data-testid="stImage"] img')]
  .filter((img) => !img.closest('[data-stale="true"]')).map((img) => img.src).join(' ')
"""


def log(message: str) -> None:
    print(f"[classroom {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_demo_config():
    """The run the Train page's "Live demo preset" toggle launches on the default data (the demo set)."""
    from core import catalog
    from core.catalog import REGIMES
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig, live_demo_preset

    data, preset = live_demo_preset(DataConfig())
    row = REGIMES["frozen"]
    model = ModelConfig(backbone=catalog.default_backbone(), regime="frozen", weights=row.weights)
    train = TrainConfig(epochs=row.epochs, learning_rate=row.learning_rate, weight_decay=row.weight_decay)
    return RunConfig(
        name="classroom live demo",
        data=data,
        model=model.replace(**preset["model"]),
        train=train.replace(**preset["train"]),
    )


def use_home(home: Path, datasets: Path) -> None:
    """Point this process (and the runs it starts) at ``home``, whose ``datasets/`` is the shared drawn set."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "datasets").exists():
        (home / "datasets").symlink_to(datasets, target_is_directory=True)
    os.environ["TRANSFER_LAB_HOME"] = str(home)


INSTRUCTOR = "instructor"


def launch_run(config, classroom: bool = False) -> tuple[str, float]:
    """Queue the run (in a class, the instructor's) and note when."""
    from core import runs
    from core.classroom import Learner

    return runs.start_run(config, Learner(INSTRUCTOR, instructor=True) if classroom else None), time.time()


def finish_run(run_id: str, launched: float) -> tuple[float, str]:
    """Seconds from launch to the run's end, and its final status."""
    from core import runs

    record = runs.wait_until_finished(run_id, timeout_s=1800)
    return (record.finished_at or time.time()) - launched, record.status


# ---------------------------------------------------------------------------------------------- server


def process_tree(root: int) -> list[int]:
    """``root`` and its live descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """utime + stime + cutime + cstime of ``root``, plus utime + stime of its live descendants."""
    total = 0.0
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own = int(fields[11]) + int(fields[12])
        reaped = int(fields[13]) + int(fields[14]) if pid == root else 0
        total += (own + reaped) / CLOCK_TICKS
    return total


def children_cpu_seconds(command: str) -> float:
    """utime + stime of this script's live descendants whose command starts with ``command`` ("chrom": the
    browsers, "node": Playwright's driver): where the rest of the box's CPU goes."""
    total = 0.0
    for pid in process_tree(os.getpid()):
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if text.split("(", 1)[1].startswith(command):
            fields = text.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return total


def start_server(home: Path, port: int, log_path: Path) -> subprocess.Popen:
    env = {**os.environ, "TRANSFER_LAB_HOME": str(home)}  # with TRANSFER_LAB_CLASSROOM under --classroom
    command = [
        sys.executable, "-m", "streamlit", "run", "dashboard/app.py",
        "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/_stcore/health"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(url, timeout=1).read() == b"ok":
                return server
        except OSError:
            time.sleep(0.5)
    server.terminate()
    raise SystemExit("streamlit did not answer: " + log_path.read_text()[-2000:])


# ---------------------------------------------------------------------------------------------- sessions


@dataclass
class Session:
    index: int
    times_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def settle(page, want: str, before: str | None) -> None:
    outcome = await page.wait_for_function(SETTLED_JS, arg=[want, before], polling=200, timeout=SETTLE_TIMEOUT_S * 1000)
    if await outcome.json_value() == "exception":
        raise RuntimeError("the page shows a Streamlit exception")


async def timed(session: Session, what: str, action, page, want: str, before: str | None = None) -> None:
    start = time.perf_counter()
    try:
        await action()
        await settle(page, want, before)
    except Exception as error:  # a timeout, a missing element, a crashed page: one error for this interaction
        session.errors.append(f"{what}: {str(error).splitlines()[0][:160]}")
        log(f"session {session.index}: {what} failed: {str(error).splitlines()[0][:160]}")
    else:
        session.times_ms.append((time.perf_counter() - start) * 1000)


async def visit(browser, url: str, session: Session, args) -> object:
    """Augment, a slider, Train; returns the browser context, left open. In a class the session is learner
    ``learner-<index>``, named in the address as after joining."""
    motion = "reduce" if args.reduced_motion else "no-preference"
    context = await browser.new_context(viewport={"width": 1400, "height": 1000}, reduced_motion=motion)
    context.set_default_timeout(SETTLE_TIMEOUT_S * 1000)
    page = await context.new_page()
    address = url + "/augment" + (f"?learner=learner-{session.index + 1}" if args.classroom else "")
    await timed(session, "open Augment", lambda: page.goto(address, wait_until="commit"), page, "augment")
    try:
        before = await page.evaluate(IMAGE_SOURCES_JS)
    except Exception:  # the page never loaded (an error counted above): the slider move waits for any pictures
        before = None

    async def move_slider() -> None:
        thumbs = page.locator('[data-testid="stSlider"] input[type="range"]:not([disabled])')
        thumb = thumbs.nth(session.index % max(await thumbs.count(), 1))
        await thumb.focus()
        await thumb.press("ArrowRight")

    await timed(session, "move a slider", move_slider, page, "augment", before)

    async def open_train() -> None:
        await page.locator('[data-testid="stSidebarNav"] a[href$="/train"]').click()

    await timed(session, "open Train", open_train, page, "Train")
    return context


async def chromium(playwright, nice: int):
    """Debian's chromium at a lower priority (see the module docstring): a wrapper that execs it under nice."""
    wrapper = Path(tempfile.mkdtemp(prefix="bench-chromium-")) / "chromium"
    wrapper.write_text(
        "#!/bin/sh\n"
        # Playwright starts the browser in a session of its own, hence an autogroup of its own, which the kernel
        # weighs as much as the server's and the trainer's whatever the niceness inside it: lower the group too.
        f'[ "$(cut -d" " -f6 /proc/$$/stat)" = "$$" ] && echo {int(nice)} > /proc/self/autogroup 2>/dev/null\n'
        f'exec nice -n {int(nice)} {CHROMIUM} "$@"\n'
    )
    wrapper.chmod(0o755)
    return await playwright.chromium.launch(executable_path=str(wrapper), headless=True, args=CHROMIUM_ARGS)


async def classroom(args, url: str, server: subprocess.Popen, config) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await chromium(playwright, args.browser_nice)
        log("warm-up: one untimed session opens Augment and Train")
        warm = Session(-1)
        warm_context = await visit(browser, url, warm, args)
        await warm_context.close()
        if warm.errors:
            log(f"warm-up errors: {warm.errors}")

        run_id, launched = launch_run(config, args.classroom)
        run_done = asyncio.create_task(asyncio.to_thread(finish_run, run_id, launched))
        log(f"run {run_id} queued; {args.sessions} sessions arrive over {args.arrival_s:g} s")
        sessions = [Session(i) for i in range(args.sessions)]

        async def arrive(session: Session):
            await asyncio.sleep(args.arrival_s * session.index / max(args.sessions, 1))
            return await visit(browser, url, session, args)

        cpu_start, window_start = cpu_seconds(server.pid), time.perf_counter()
        browser_start, driver_start = children_cpu_seconds("chrom"), children_cpu_seconds("node")
        contexts = await asyncio.gather(*(arrive(s) for s in sessions))
        cpu_s, window_s = cpu_seconds(server.pid) - cpu_start, time.perf_counter() - window_start
        browser_s = children_cpu_seconds("chrom") - browser_start
        driver_s = children_cpu_seconds("node") - driver_start
        log(f"all sessions done in {window_s:.1f} s; waiting for the run with every session open")
        train_loaded_s, status = await run_done
        for context in contexts:
            await context.close()
        await browser.close()

    times = sorted(t for s in sessions for t in s.times_ms)
    interactions = 3 * args.sessions
    return {
        "sessions": args.sessions,
        "classroom": args.classroom,
        "reduced_motion": args.reduced_motion,
        "interactions": interactions,
        "p50_ms": round(statistics.median(times)) if times else None,
        "p95_ms": round(times[min(len(times) - 1, int(0.95 * len(times)))]) if times else None,
        "errors": sum(len(s.errors) for s in sessions),
        "server_cpu_s": round(cpu_s, 2),
        "server_cpu_s_per_interaction": round(cpu_s / interactions, 3),
        "load_window_s": round(window_s, 1),
        "browser_cpu_s": round(browser_s, 1),
        "driver_cpu_s": round(driver_s, 1),
        "train_loaded_s": round(train_loaded_s, 1),
        "train_status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=30, help="Browser sessions (a class).")
    parser.add_argument("--arrival-s", type=float, default=5.0, help="Seconds over which the sessions arrive.")
    parser.add_argument(
        "--classroom", action="store_true", help="Classroom mode: each session a learner, the run the instructor's."
    )
    parser.add_argument(
        "--reduced-motion",
        action="store_true",
        help="Browsers that prefer reduced motion: fewer animation frames drawn on the server's cores.",
    )
    parser.add_argument("--browser-nice", type=int, default=19, help="Niceness of chromium (0: as the server).")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("This benchmark needs Debian's chromium (apt-get install chromium).")
    if args.classroom:
        from core.classroom import CLASSROOM_ENV

        os.environ[CLASSROOM_ENV] = "1"
    with tempfile.TemporaryDirectory(prefix="bench-classroom-") as scratch:
        scratch = Path(scratch)
        datasets = scratch / "datasets"
        datasets.mkdir()
        config = live_demo_config()

        use_home(scratch / "alone", datasets)
        from core import demo

        demo.demo_folder(config.model.effective_image_size)  # drawn once, for both runs, before any timing
        log("training alone")
        alone_s, status = finish_run(*launch_run(config))
        if status != "completed":
            sys.exit(f"The run alone ended {status}: see {scratch / 'alone' / 'runs'}")
        log(f"alone: {alone_s:.1f} s")

        home = scratch / "loaded"
        use_home(home, datasets)
        port = free_port()
        server = start_server(home, port, scratch / "streamlit.log")
        try:
            result = asyncio.run(classroom(args, f"http://127.0.0.1:{port}", server, config))
        finally:
            server.terminate()
            server.wait(timeout=30)
        result["train_alone_s"] = round(alone_s, 1)
        result["train_slowdown"] = round(result["train_loaded_s"] / alone_s, 2)
        result["load_average_1min"] = round(os.getloadavg()[0], 2)
        keys = [*KEYS, *(key for key in result if key not in KEYS)]
        print(json.dumps({key: result[key] for key in keys}), flush=True)


if __name__ == "__main__":
    main()
