"""The contract package: one exit-code table (and its documentation), READY and manifest parsing, whole keys,
the shared CLI conventions, and a load tester that installs without the packager's heavy libraries."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import tomllib
from pathlib import Path

import pytest

from emotion_contract.cli import add_old_spelling, boundary
from emotion_contract.documents import Manifest, Ready, dump
from emotion_contract.errors import BadInput, Conflict, ExitCode
from emotion_contract.layout import ENTRY_FILES, Layout, upload_order, version_of

REPO = Path(__file__).resolve().parents[2]
HEAVY = {
    "torch",
    "transformers",
    "openvino",
    "openvino-tokenizers",
    "nncf",
    "onnx",
    "onnxscript",
    "model-packager",
}


def test_every_exit_code_is_in_the_one_table_with_its_name() -> None:
    table = (REPO / "docs" / "contracts.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| (\d+) \| `([A-Z_]+)` \|", table, re.MULTILINE))
    assert rows == {str(int(code)): code.name for code in ExitCode}


def test_the_codes_are_distinct() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)


def test_the_load_tester_and_devstack_do_not_depend_on_the_packager_or_its_libraries() -> None:
    for package in ("load-tests", "devstack", "contract"):
        project = tomllib.loads((REPO / package / "pyproject.toml").read_text())["project"]
        names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
        assert not names & HEAVY, (package, names & HEAVY)


def test_ready_round_trips_and_names_its_manifest() -> None:
    layout = Layout("emotion")
    ready = Ready.of(layout, 3, b"{}\n")
    parsed = Ready.parse(ready.dump())
    assert parsed == ready
    assert parsed.manifest == "manifests/emotion/3.json"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "READY is not valid JSON"),
        (b"[1]", "READY is not a JSON object"),
        (b'{"manifest": "m"}', "READY is malformed ('version')"),
        (b'{"version": 0, "manifest": "m"}', "READY is malformed (version 0 is not a positive whole number)"),
        (
            b'{"version": "2", "manifest": "m"}',
            "READY is malformed (version '2' is not a positive whole number)",
        ),
        (b'{"version": 2}', "READY is malformed ('manifest')"),
    ],
)
def test_a_malformed_ready_is_named_with_the_error_its_reader_chooses(data: bytes, message: str) -> None:
    with pytest.raises(BadInput) as bad:
        Ready.parse(data)
    assert bad.value.message.startswith(message)
    with pytest.raises(Conflict):
        Ready.parse(data, error=Conflict)


def test_a_manifest_without_checksums_is_refused() -> None:
    with pytest.raises(BadInput, match=r"^m is malformed \(object a lacks its sha256 or size\)$"):
        Manifest.parse(dump({"objects": {"a": {"size": 1}}}), where="m")
    manifest = Manifest.parse(json.dumps({"objects": {"a": {"size": 1, "sha256": "0"}}}).encode())
    assert manifest.objects["a"].size == 1
    assert manifest.tokenizer_key is None


def test_keys_are_whole_and_carry_their_version() -> None:
    layout = Layout("emotion")
    keys = [
        layout.onnx(2),
        layout.onnx_runner(2),
        layout.tokenizer(2),
        layout.ir(layout.token_model, 2),
        layout.ir(layout.text_model, 2),
        layout.ensemble_note(2),
    ]
    assert keys == [
        "triton/emotion/2/model.onnx",
        "triton/emotion/2/model.py",
        "triton/emotion/2/tokenizer.json",
        "ovms/emotion/2/model.xml",
        "ovms/emotion-text/2/model.xml",
        "triton/emotion-text/2/README.md",
    ]
    assert {version_of(k) for k in keys} == {2}
    assert layout.triton_config(layout.token_model, "cpu") == "triton/emotion/configs/cpu.pbtxt"
    assert version_of(layout.triton_config(layout.token_model)) is None
    ordered = upload_order([*keys, "ovms/emotion/2/model.bin"])
    assert [k.rsplit("/", 1)[-1] in ENTRY_FILES for k in ordered] == [
        False,
        False,
        True,
        True,
        True,
        True,
        True,
    ]
    assert ordered[-2:] == ["ovms/emotion-text/2/model.xml", "ovms/emotion/2/model.xml"]


def test_a_kept_report_lives_outside_the_server_trees_under_a_plain_run_name() -> None:
    layout = Layout("emotion")
    assert layout.report_prefix("emotion-20261202-0400") == "reports/emotion/emotion-20261202-0400/"
    assert version_of(layout.report_prefix("7") + "report.json") is None
    assert Layout.valid_run("emotion-20261202-0400")
    for bad in ("", "Run", "a/b", "-a", "a-", "x" * 64, "..", "a b"):
        assert not Layout.valid_run(bad), bad


def test_the_boundary_prints_one_line_and_returns_the_code(capsys) -> None:
    def fails() -> int:
        raise BadInput("the corpus is empty")

    assert boundary("tool", fails, log_format="text") == ExitCode.BAD_INPUT
    assert capsys.readouterr().err == "tool: the corpus is empty\n"

    def interrupted() -> int:
        raise KeyboardInterrupt

    assert boundary("tool", interrupted, log_format="text") == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "tool: interrupted\n"


def test_the_boundary_leaves_bugs_to_their_traceback() -> None:
    def bug() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        boundary("tool", bug, log_format="text")


def test_the_boundary_turns_sigterm_into_exit_130(capsys) -> None:
    def terminated() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        return int(ExitCode.OK)  # not reached: the handler raises first

    assert boundary("tool", terminated, log_format="text") == ExitCode.INTERRUPTED
    assert capsys.readouterr().err == "tool: interrupted\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler is put back


def test_an_old_spelling_still_works_and_says_so(capsys) -> None:
    parser = argparse.ArgumentParser(prog="tool")
    parser.add_argument("--endpoint")
    add_old_spelling(parser, "--s3-endpoint", "--endpoint", dest="endpoint")
    assert parser.parse_args(["--s3-endpoint", "http://h:1"]).endpoint == "http://h:1"
    assert capsys.readouterr().err == "tool: --s3-endpoint is deprecated, use --endpoint\n"
    assert "--s3-endpoint" not in parser.format_help()
