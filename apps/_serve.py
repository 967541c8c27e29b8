"""``interp app``'s server: starts loading the explorer's model, then runs Streamlit.

Run as ``python apps/_serve.py MODEL STREAMLIT_FLAGS...``. Streamlit serves
``Model_and_prompt.py`` beside this file; the model named first loads in the background
(:mod:`_preload`) while the server starts and the browser connects.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(HERE))
    import _preload

    from streamlit.web import cli  # first: the server then starts with the load beside it

    model, flags = argv[0], argv[1:]
    _preload.start(model)

    sys.argv = ["streamlit", "run", str(HERE / "Model_and_prompt.py"), *flags]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
