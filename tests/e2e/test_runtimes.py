"""The demo's runtime comparison from real runs (devstack.runtimes): the release's Triton with ONNX Runtime
and a second Triton with the OVMS IRs under OpenVINO, the same load test on both, token ids and raw text.
Short levels, no timing assertion: the table has both columns and every loadtest column, and the verdict
names both sides for both inputs."""

from __future__ import annotations

from pathlib import Path

from devstack.release import Release
from devstack.runtimes import ONNXRUNTIME, OPENVINO, WHAT, compare_runtimes, write_markdown
from loadtest.columns import COLUMNS


def test_the_comparison_has_both_columns_and_a_verdict(published: Release, tmp_path: Path) -> None:
    for component in ("triton", "ovms"):  # the servers' fetch initContainers fill their pods' repositories
        fetched = published.fetch(component)
        assert fetched.returncode == 0, fetched.stderr[-2000:]
    published.start_triton()
    problems, _ = published.check_ovms()
    assert problems == []
    compared = compare_runtimes(published, tmp_path, duration="2s", warmup="0s", levels=(1,))

    headers = [line for line in compared.tables if not line.startswith(" ")]
    assert [h.split() for h in headers] == [
        ["tokens", ONNXRUNTIME, OPENVINO],
        ["text", ONNXRUNTIME, OPENVINO],
    ]
    rows = [line.strip() for line in compared.tables if line.startswith("    ")]
    assert len(rows) == 2 * len(COLUMNS)
    for column in COLUMNS:
        assert sum(row.startswith(column.title) for row in rows) == 2, column.title
    for kind in ("tokens", "text"):
        assert f"{kind} c=1: {OPENVINO} vs {ONNXRUNTIME}: req/s " in compared.verdict
    assert compared.verdict.count("p99 ms") == 2
    assert set(compared.figures) >= {"openvino_triton_start_to_ready_s", "load_s", "rss_peak_under_load_mib"}
    assert set(compared.figures["rss_peak_under_load_mib"]) == {ONNXRUNTIME, OPENVINO}

    write_markdown(compared, tmp_path / "comparison.md")
    text = (tmp_path / "comparison.md").read_text()
    assert WHAT in text
    assert "no OVMS binary exists here" in text.replace("No OVMS", "no OVMS")
    assert f"**Verdict**: {compared.verdict}" in text
