"""CI fails where a check it must run was skipped (tests/conftest.py, TRTFLOW_CI_REQUIRES set by .ci/run); on a
developer's machine the same skip only says what was not tested."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REQUIRED_IN_CI, ROOT, required_but_skipped


def test_each_required_check_is_named_by_the_skip_reason_it_gives():
    reasons = ["NOT TESTED: the report in a browser (no chromium here; `apt-get install chromium`)",
               "NOT TESTED here: tp 2 over NCCL needs two GPUs"]
    assert required_but_skipped(reasons, "browser,slurm") == ["browser"]
    assert required_but_skipped(reasons, "") == []
    assert required_but_skipped(["no Slurm answers here (sinfo: None)"], "slurm,hub") == ["slurm"]
    with pytest.raises(ValueError, match="TRTFLOW_CI_REQUIRES names"):
        required_but_skipped(reasons, "chromium")
    for name, words in REQUIRED_IN_CI.items():  # each phrase is in the skip reason its test gives
        assert any(words in path.read_text() for path in (ROOT / "tests").glob("*.py") if path.name != "conftest.py"
                   and path.name != "test_ci.py"), name


@pytest.mark.parametrize("required, code", [("browser", 1), ("", 0)])
def test_a_skipped_required_check_fails_the_run(required, code, tmp_path):
    """A real pytest run of a test that skips as the browser check does: red where CI requires it, green else."""
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_skip.py").write_text(
        "import pytest\n\ndef test_report():\n"
        "    pytest.skip('NOT TESTED: the report in a browser (no chromium here)')\n")
    env = {**os.environ, "TRTFLOW_CI_REQUIRES": required}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                           str(tmp_path)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == code, proc.stdout[-2000:]
    assert ("checks CI must run were skipped (browser)" in proc.stdout) == bool(code)
