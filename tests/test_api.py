"""The package's public API: every analysis importable from `interp`, loaded only when used."""

import subprocess
import sys

import interp


def test_every_export_resolves_to_its_module():
    for name in interp.__all__:
        obj = getattr(interp, name)
        assert obj is not None and name in dir(interp)
    assert interp.patch_sweep.__module__ == "interp.patching"
    assert interp.trace.__module__ == "interp.tracing" and interp.edit.__module__ == "interp.rome"


def test_importing_the_package_and_cli_help_leave_torch_unloaded():
    """`interp --help` took 2.2 s, nearly all of it importing torch through interp/__init__."""
    code = ("import sys, interp, interp.cli; "
            "assert 'torch' not in sys.modules and 'transformer_lens' not in sys.modules, sorted(sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
    help_ = subprocess.run([sys.executable, "-m", "interp", "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "VERB" in help_.stdout
