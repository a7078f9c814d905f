"""The README's two set-up commands: what they run needs nothing beside the clone, and CI runs the second."""

from __future__ import annotations

from pathlib import Path

from benchmarks.fresh_clone import readme_command

ROOT = Path(__file__).resolve().parents[1]


def test_quick_start_runs_the_demo_offline_with_nothing_beside_the_clone():
    cmd = readme_command("quickstart")
    assert cmd.endswith("clamp2-engine demo")
    assert "../" not in cmd
    assert "shared" not in cmd


def test_ci_runs_the_readme_test_command():
    test_cmd = readme_command("tests").split("&&")[-1].strip()
    assert test_cmd == "python -m pytest -q"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test_cmd in [line.strip() for line in ci]


def test_no_test_reads_beside_the_checkout():
    beside, env = "../" + "shared", "CLAMP2_" + "SHARED"  # spelled apart so this file does not match itself
    for path in [*(ROOT / "tests").glob("*.py"), ROOT / ".ci" / "run", ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        assert beside not in text, path
        assert env not in text, path
