"""The explorer's model, loaded while the server starts and the browser connects.

``interp app`` starts the Streamlit server through :mod:`_serve`, which calls :func:`start`
first. Importing torch, transformers and TransformerLens and building the model take most of
the time to the first page; the server is otherwise idle until a browser connects, so the work
runs in a background thread from the first moment. The first page run calls :func:`wait` before
importing anything heavy itself (two threads importing the same packages at once can deadlock on
their import locks) and then :func:`take`\\ s the model instead of loading it again.

Standard library only: this module is imported before the heavy packages.
"""

from __future__ import annotations

import gc
import threading

_done = threading.Event()
_done.set()  # nothing started (tests, or ``streamlit run`` by hand): waiting returns at once
_models: dict[str, object] = {}
_started = False


def start(name: str) -> None:
    """Load model ``name`` in a background thread. A failure is dropped here: the page loads the
    model again and shows the error line."""
    global _started
    _started = True
    _done.clear()

    def work() -> None:
        # Collections triggered by the allocations of the imports and the model's construction
        # cost about 1.3 s of 8 on 2 cores, and find almost nothing to free: pause them, collect
        # once, and then move everything alive (the model's half a million objects) out of the
        # collector's sight, so that no later full collection walks it in the middle of a rerun.
        gc.disable()
        try:
            from interp import load_model

            _models[name] = load_model(name)
            import interp.figures  # noqa: F401  the first page's figure and the pages' common imports
            import interp.predictions  # noqa: F401
        except BaseException:  # noqa: BLE001  reported by the page's own load
            pass
        finally:
            gc.enable()
            freeze()
            _done.set()

    threading.Thread(target=work, name="interp-preload", daemon=True).start()


def freeze() -> None:
    """Collect once, then move everything alive (a model is half a million objects) out of the
    garbage collector's sight: a full collection walking a model took about 0.5 s on 2 cores, at
    random points of a rerun, and doubled some head switches on the Attention page. For the
    ``interp app`` server, whose models live as long as it does."""
    gc.unfreeze()  # a model evicted from the page's cache since the last freeze can be collected now
    gc.collect()
    gc.freeze()


def serving() -> bool:
    """Whether this process is the ``interp app`` server (:func:`start` was called)."""
    return _started


def pending() -> bool:
    return not _done.is_set()


def wait() -> None:
    """Return when the background load has finished (at once when none was started)."""
    _done.wait()


def take(name: str):
    """The preloaded model ``name``, handed over once; ``None`` when it was not preloaded."""
    return _models.pop(name, None)
