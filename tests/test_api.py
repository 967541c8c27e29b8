"""The package's public API: every analysis importable from `interp`, loaded only when used."""

import subprocess
import sys

import interp


def test_every_export_resolves_to_its_module():
    for name in interp.__all__:
        obj = getattr(interp, name)
        assert obj is not None and name in dir(interp)
    assert interp.patch_sweep.__module__ == "interp.circuits.patching"
    assert interp.trace.__module__ == "interp.knowledge.tracing" and interp.edit.__module__ == "interp.knowledge.rome"


def test_importing_the_package_and_cli_help_leave_torch_unloaded():
    """`interp --help` took 2.2 s, nearly all of it importing torch through interp/__init__."""
    code = ("import sys, interp, interp.cli; "
            "assert 'torch' not in sys.modules and 'transformer_lens' not in sys.modules, sorted(sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    help_ = subprocess.run([sys.executable, "-m", "interp", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "VERB" in help_.stdout


def test_results_draw_themselves_with_the_figures_module(tiny_models):
    """`.figure()` on a result is the interp.figures function applied to it (one line per plot in a
    notebook; the figures module stays the implementation)."""
    from interp import figures
    from interp.metrics import make_task

    m = tiny_models["tiny-gpt2"]
    eiffel, colosseum = "The Eiffel Tower is located in the city of", "The Colosseum is located in the city of"
    att = interp.attention_patterns(m, eiffel)
    assert att.figure(layer=1, head=0).to_json() == figures.attention_figure(att, 1, 0).to_json()
    lens = interp.logit_lens(m, eiffel)
    assert lens.figure().to_json() == figures.lens_figure(lens).to_json()
    dla = interp.direct_logit_attribution(m, eiffel, " Paris", " Rome")
    assert dla.figure().to_json() == figures.dla_figure(dla).to_json()
    sweep = interp.patch_sweep(m, make_task(m, eiffel, colosseum, " Paris", " Rome"), "resid_pre")
    assert sweep.figure().to_json() == figures.patch_figure(sweep).to_json()
    heads = interp.detect_heads(m, n_seqs=2, seq_len=8)
    assert heads.figure().to_json() == figures.head_scores_figure(heads).to_json()


def test_json_fields_and_attributes_share_names():
    from interp.circuits.attention import HeadScores
    from interp.representations.probes import ProbeReport

    assert {"loss_first_repeat", "loss_second_repeat"} <= set(HeadScores.__dataclass_fields__)
    assert isinstance(ProbeReport.best_layer, property) and isinstance(ProbeReport.best_accuracy, property)


def test_every_module_declares_its_public_names():
    """Tab completion on a module shows its API, not its imports."""
    import importlib
    import pkgutil

    import saes

    for pkg in (interp, saes):
        for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."):
            if info.ispkg or info.name.rsplit(".", 1)[1].startswith("_"):
                continue  # sub-packages group modules and export nothing of their own
            module = importlib.import_module(info.name)
            assert module.__all__, module.__name__
            assert not [n for n in module.__all__ if n.startswith("_")], module.__name__
            for name in module.__all__:
                assert hasattr(module, name), f"{module.__name__}.__all__ names missing {name}"
            assert not {"torch", "Tensor", "dataclass", "Path"} & set(module.__all__), module.__name__


def test_top_level_help_is_plain_text():
    out = subprocess.run([sys.executable, "-m", "interp", "--help"], capture_output=True, text=True).stdout
    assert "``" not in out and "--json" in out
