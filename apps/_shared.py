"""What every explorer page shares: the model picker, inputs that live in the URL, and cached
library calls.

Pages only call library functions and draw their results; nothing here computes.

**Shareable views.** :func:`shared` binds a widget to a name that lives in the page's URL
(``st.query_params``) and in the session, so a copied link reopens the same view and a prompt
typed on one page is the starting value on the next. The URL wins over the session, the session
over the default.

**One model, many sessions.** Every browser tab is a session, and all of them share one loaded model
(:func:`cached_model`) and its hook points. Two runs that hook it at once would see each other's
hooks (a steering vector in a graph's backward pass, a graph's freezing hooks in a generation), so
every computation on the model runs under :func:`on_model`, one at a time; a tab that has to wait
says so.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from contextlib import contextmanager

import _preload
import streamlit as st

if _preload.pending():  # `interp app` is still loading the model: let it finish before importing
    with st.spinner("Loading the model…"):
        _preload.wait()

from interp import InterpError, load_model  # noqa: E402
from interp.models import BUILTIN, DEFAULT_MODEL  # noqa: E402

DEFAULT_PROMPT = "The Eiffel Tower is located in the city of"


def _cast(raw: str, default, kw: dict):
    """A URL value as the widget's type, or the default when it does not fit the widget."""
    try:
        value = type(default)(raw) if not isinstance(default, bool) else raw == "True"
    except (TypeError, ValueError):
        return default
    return value if _fits(value, kw) else default


def _fits(value, kw: dict) -> bool:
    """Whether the widget built with ``kw`` can hold ``value`` (a layer of another model may not)."""
    if "options" in kw and value not in kw["options"] and not kw.get("accept_new_options"):
        return False
    lo, hi = kw.get("min_value"), kw.get("max_value")
    try:
        return not (lo is not None and value < lo or hi is not None and value > hi)
    except TypeError:
        return False


def shared(widget, label: str, name: str, default, **kw):
    """``widget(label, **kw)`` whose value starts from the URL's ``name`` when the URL is new (a
    shared link, or another page sent it), else from this session (another page may have set it),
    else ``default``; the value is written back to both."""
    key = "w_" + name
    raw = st.query_params.get(name)
    page = _page()
    arrived = st.session_state.get("page_of_" + name) != page  # the first run since another page drew it
    st.session_state["page_of_" + name] = page
    if raw is not None and raw != st.session_state.get("url_" + name):
        st.session_state[key] = _cast(raw, default, kw)
    elif arrived or key not in st.session_state:  # a widget's state does not cross pages: set it again
        st.session_state[key] = st.session_state.get("keep_" + name, default)
    if not _fits(st.session_state[key], kw):  # e.g. layer 18 after switching to a 3-layer model
        st.session_state[key] = default
    value = widget(label, key=key, **kw)
    st.session_state["keep_" + name] = value
    if raw != str(value):
        st.query_params[name] = str(value)
    st.session_state["url_" + name] = st.query_params.get(name)  # as the URL holds it (it may normalise)
    return value


def _page() -> str:
    """The page this run draws (Streamlit's script hash of it)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return getattr(ctx, "page_script_hash", "") if ctx is not None else ""


def remembered(name: str, default=None):
    """A shared value as the last page left it (for pages that read it without a widget)."""
    return st.session_state.get("keep_" + name, default)


def edits_key(model) -> str:
    """Changes whenever ROME edits change the weights, so cached results are keyed on the weights."""
    from interp.knowledge.rome import edits

    return ";".join(f"{e.layer}:{e.subject}->{e.target}" for e in edits(model))


@st.cache_resource(show_spinner=False)
def _model_lock() -> threading.RLock:
    """One lock for the whole server (every session, every model): runs that hook a model take turns."""
    return threading.RLock()


@contextmanager
def on_model():
    """Hold the server's model lock for a computation; a tab that finds another tab computing says it
    waits, then runs. Re-entrant, so a cached function that calls another one does not wait on itself."""
    lock = _model_lock()
    if not lock.acquire(blocking=False):
        note = st.empty()
        note.info("Another tab is computing on the shared model; this waits for it, then runs.")
        lock.acquire()
        note.empty()
    try:
        yield
    finally:
        lock.release()


def serialised(fn):
    """``fn`` run under :func:`on_model` (put it under ``st.cache_*``, so that a cache hit never waits)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with on_model():
            return fn(*args, **kwargs)

    return run


@st.cache_resource(show_spinner="Loading model…", max_entries=2)
def cached_model(name: str):
    _preload.wait()
    model = _preload.take(name)  # loaded while the server started (`interp app`), and frozen
    if model is None:
        model = load_model(name)
        if _preload.serving():  # only in the server: a test process keeps its collector as it is
            _preload.freeze()
    return model


@st.cache_data(show_spinner="Direct logit attribution…", max_entries=32)
@serialised
def cached_dla(name: str, prompt: str, answer: str, wrong: str, edited: str):
    from interp import direct_logit_attribution

    return direct_logit_attribution(cached_model(name), prompt, answer, wrong)


@st.cache_resource(show_spinner="Head weights…", max_entries=2)
@serialised
def cached_head_weights(name: str, edited: str):
    from interp.circuits.weights import head_weights

    return head_weights(cached_model(name))


@st.cache_data(show_spinner="OV copying scores of every head…", max_entries=2)
def cached_copying(name: str, edited: str):
    from interp.circuits.weights import copying_scores

    return copying_scores(cached_head_weights(name, edited))


@st.cache_resource(show_spinner="Loading the SAE…", max_entries=4)
def cached_sae(path: str):
    from saes.io import load_sae

    return load_sae(path)


def pick_model():
    """Sidebar model picker (a built-in name, a cached Hugging Face name or a local directory);
    returns (name, model) or stops the page with the error line."""
    start = os.environ.get("INTERP_MODEL", DEFAULT_MODEL)
    asked = [v for v in (st.query_params.get("model"), remembered("model")) if v]  # a link's or a typed name
    options = list(dict.fromkeys([start, *BUILTIN, *_cached_repos(), *asked]))
    name = shared(st.sidebar.selectbox, "Model", "model", start, options=options, accept_new_options=True,
                  help="a built-in name, a Hugging Face name already in the cache, or a local model directory")
    try:
        model = cached_model(name.strip())
    except InterpError as err:
        st.error(str(err))
        st.stop()
    from interp.knowledge.rome import edits

    if edits(model):  # an edited model says so on every page
        st.sidebar.warning("Edited by ROME: " + "; ".join(f"{e.subject} → {e.target!r}" for e in edits(model)))
    return name, model


@st.cache_data(show_spinner=False, ttl=600)
def _cached_repos() -> list[str]:
    from interp.models import list_models

    return [r["name"] for r in list_models() if r["kind"] == "huggingface" and r["cached"]]


def prompt_input(label: str = "Prompt", name: str = "prompt", default: str = DEFAULT_PROMPT, area: bool = False) -> str:
    """The prompt that carries over between pages."""
    return shared(st.text_area if area else st.text_input, label, name, default, **({"height": 80} if area else {}))


def head_from_selection(event) -> tuple[int, int] | None:
    """The (layer, head) of a clicked :func:`interp.figures.click_targets` marker, if any."""
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    for p in points:
        data = p.get("customdata")
        if isinstance(data, (list, tuple)) and len(data) == 2:
            return int(data[0]), int(data[1])
    return None


@contextmanager
def progress_bar(what: str):
    """A Streamlit progress bar, with the estimate and the live ETA, for the library's progress bars in the
    block (:func:`interp.progress.listening`); it goes when the block ends. For computations long
    enough that a spinner alone leaves a user guessing (a trace, a probe sweep, patching)."""
    from interp.progress import duration, listening

    slot = st.empty()
    said = {"estimate": ""}

    def tell(event: dict) -> None:
        if "estimate" in event:
            said["estimate"] = f" · estimate: {event['estimate']}"
            return
        n, total = event["n"], event["total"]
        left = event["remaining"]
        eta = f", about {duration(left)} left" if left is not None else ""
        text = f"{what}: {event['desc']} {n:,}/{total:,}" if total else f"{what}: {event['desc']} {n:,}"
        slot.progress(min(1.0, n / total) if total else 0.0,
                      text=f"{text} ({duration(event['elapsed'])} so far{eta}){said['estimate']}")

    try:
        with listening(tell):
            yield
    finally:
        slot.empty()


def with_progress(what: str):
    """``fn`` run under :func:`progress_bar` (put it under ``st.cache_*``, so that a cache hit draws no bar)."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with progress_bar(what):
                return fn(*args, **kwargs)

        return run

    return wrap


def continuation_html(label: str, prompt: str, continuation: str) -> str:
    """A prompt and its generated continuation, the continuation highlighted (HTML-escaped: a model's
    text may hold markdown or markup)."""
    import html

    return (f'<div style="margin:4px 0"><b>{html.escape(label)}:</b> {html.escape(prompt)}'
            f'<span style="background:#fdecc8;border-radius:3px">{html.escape(continuation)}</span></div>')


def show_error(err: InterpError) -> None:
    st.error(str(err))
    st.stop()


def apply_click(chart_key: str, targets: tuple[str, str] = ("layer", "head")) -> None:
    """Before the widgets are drawn: a new click on chart ``chart_key`` (its selection from the last
    run) sets the shared layer and head, once per click."""
    picked = head_from_selection(st.session_state.get(chart_key))
    if picked is not None and st.session_state.get(chart_key + "_applied") != picked:
        st.session_state[chart_key + "_applied"] = picked
        for name, value in zip(targets, picked):
            st.session_state["w_" + name] = value
            st.session_state["keep_" + name] = value


def token_attention_html(tokens: list[str], pattern, height: int = 160) -> None:
    """CircuitsVis-style view of one head: hover a query token and its keys shade by attention. The
    frame runs script, so every token is HTML-escaped and the pattern goes in as JSON numbers."""
    import html
    import json

    spans = "".join(f'<span class="t" data-i="{i}">{html.escape(t).replace(" ", "&nbsp;") or "&nbsp;"}</span>'
                    for i, t in enumerate(tokens))
    lines = 1 + sum(len(t) + 2 for t in tokens) // 70  # the strip wraps: a long prompt takes more lines
    st.iframe(f"""
<style>body{{font-family:monospace;font-size:15px;line-height:2}} #toks{{display:flex;flex-wrap:wrap;gap:3px 2px}}
.t{{padding:2px 1px;border-radius:3px;cursor:default;border:1px solid #ddd;white-space:pre}}
.q{{outline:2px solid #d62728}}</style>
<div id="toks">{spans}</div><div id="info" style="color:#555;font-size:13px">hover a token: its keys shade by
attention</div>
<script>
const P = {json.dumps([[round(float(v), 4) for v in row] for row in pattern.tolist()])};
const els = [...document.querySelectorAll('.t')];
els.forEach(el => el.addEventListener('mouseenter', () => {{
  const q = +el.dataset.i;
  els.forEach((k, j) => {{ const a = j <= q ? P[q][j] : 0;
    k.style.background = `rgba(31,119,180,${{a}})`; k.classList.toggle('q', j === q); }});
  let best = 0; P[q].forEach((a, j) => {{ if (a > P[q][best]) best = j; }});
  document.getElementById('info').textContent =
    `query ${{q}} attends most to key ${{best}} (${{P[q][best].toFixed(3)}})`;
}}));
</script>""", height=max(height, 90 + 34 * lines))


def job_panel(name: str, what: str, every: float = 2.0) -> None:
    """A background job's progress (:mod:`_jobs`), redrawn every ``every`` seconds without rerunning
    the page, with a Cancel button; when the job ends (done, failed or cancelled) the whole page reruns
    and shows its result, or its error and a Resume button. The estimate measured at the start is shown
    beside the time so far and the live ETA of the step."""
    import _jobs

    @st.fragment(run_every=every)
    def panel() -> None:
        job = _jobs.status(name)
        if job.state != "running":
            st.rerun(scope="app")
        label = job.steps[job.step] if job.step < len(job.steps) else "finishing"
        prog = _jobs.progress_of(job.log_tail)
        done = (job.step + (prog.fraction if prog else 0.0)) / max(len(job.steps), 1)
        left = f"; about {prog.remaining} left in this step" if prog and prog.remaining not in ("", "?") else ""
        st.progress(done, text=f"{what}: step {job.step + 1} of {len(job.steps)}: {label}{left}")
        elapsed = time.time() - job.started if job.started else 0.0
        if job.estimate and elapsed:
            st.caption(f"Running for {elapsed / 60:.1f} min of the {job.estimate / 60:.1f} min estimated at its start.")
        said = [line for line in job.log_tail.splitlines() if line.startswith("interp: estimate:")]
        if said:
            st.caption(said[-1].removeprefix("interp: estimate: "))
        st.caption("Running in the background: the other pages stay usable, and this page fills in when it is done.")
        if st.button("Cancel the job", key=f"cancel_{name}"):
            _jobs.cancel(name)
            st.rerun(scope="app")

    panel()


def demo_offer(job_name: str, steps: list, what: str, intro: str, description: str, start_label: str,
               key: str, estimate: float = 0.0) -> None:
    """A page with nothing to show yet: what to give it, and a demo that makes it in the background. While
    the job runs, its progress; otherwise ``description`` (with the time estimate) and a start (or
    resume) button."""
    import _jobs

    job = _jobs.status(job_name)
    st.info(intro)
    if job.state == "running":
        job_panel(job.name, what)
        return
    st.markdown(description)
    if job.state == "failed":
        st.error(f"The last demo job stopped: {job.error}")
    elif job.state == "cancelled":
        st.warning(f"The demo job was {job.error}")
    stopped = job.state in ("failed", "cancelled")
    if st.button("Resume the demo job" if stopped else start_label, type="primary", key=key):
        _jobs.start(job_name, steps, estimate=estimate)
        st.rerun()
