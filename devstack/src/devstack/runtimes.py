"""The demo's comparison: one classifier under two runtimes, through the same Triton, client, inputs and load.

- `onnxruntime`: the release's Triton from the bucket with the python config: its model.py runs
  model.onnx with ONNX Runtime, what the chart's Triton runs with its onnxruntime backend (the local
  build has no onnxruntime backend; devstack.release). Raw text: Triton's ensemble (the WordPiece
  python model, then the classifier).
- `openvino`: a second Triton of the same build with the same rendered arguments, serving a local
  repository: the IRs that OVMS serves (ovms/<name>/<N>, ovms/<name>-text/<N> with the tokenizer fused
  in), each run by a python model (devstack/openvino_model.py) that compiles it with the OpenVINO
  runtime under the chart's rendered OVMS plugin_config, with the ONNX Runtime side's Triton config
  (same batching, one instance).

No OVMS binary exists here, so the OpenVINO column is OpenVINO under OVMS's settings, not OVMS; on
a cluster (`make loadtest`) the OVMS column is OVMS itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import ovms
from devstack.chart import container
from devstack.errors import StackError
from devstack.process import ManagedProcess, free_port, http_status
from devstack.release import LOCAL_TRITON_CONFIG, Release
from devstack.triton import command, environment
from emotion_contract.layout import CONFIG_FILE, IR_FILE, IR_WEIGHTS, LABELS_FILE, PYTHON_MODEL, Layout
from emotion_contract.servers import SERVERS, Server

ONNXRUNTIME, OPENVINO = "onnxruntime", "openvino"
#: What the two columns are: the demo's summary and comparison.md say it in these words.
WHAT = (
    f"{ONNXRUNTIME}: model.onnx under ONNX Runtime (what Triton's onnxruntime backend runs), in the "
    f"release's Triton; {OPENVINO}: the IR that OVMS serves, compiled by OpenVINO with the chart's rendered "
    "OVMS plugin_config, in a second Triton of the same build and arguments. Same client, inputs and load: "
    "the difference is the runtime. Raw text: Triton's ensemble (tokenizer model, then the classifier) "
    "against the IR with the tokenizer fused in. No OVMS binary exists here; on a cluster the OVMS column "
    "is OVMS itself (make loadtest)."
)
#: Relative change below which a difference does not count (as `loadtest compare`'s default).
MIN_CHANGE = 0.05
_VERSIONS = re.compile(r"version_policy:[^\n]*")
#: Rendered Triton flags the OpenVINO side replaces: its ports and repository; and polling, which the local
#: repository does not need and which reloaded every model once right after start (observed here), so
#: that it compiled twice and held two copies during the first level.
_REPLACED = (
    "--http-port=", "--grpc-port=", "--metrics-port=", "--model-repository=", "--model-config-name=",
    "--model-control-mode=", "--repository-poll-secs=",
)  # fmt: skip


# -- the OpenVINO side's model repository ------------------------------------------------------------


def token_model(release: Release) -> Layout:
    """The package's layout, from the OVMS models that check_ovms downloaded."""
    names = [n for n in release.ovms_models if Layout.valid_name(n)]
    if len(names) != 1:
        raise StackError(
            f"OVMS serves {sorted(release.ovms_models)}: expected one token model (run check_ovms)"
        )
    return Layout(names[0])


def openvino_repository(release: Release, folder: Path) -> list[str]:
    """A Triton repository of the OVMS IRs, each with the Triton config of its ONNX Runtime counterpart
    (the token model's python config; the ensemble's inputs and outputs for the text model), the rendered
    plugin_config as a parameter, and devstack/openvino_model.py as model.py. Returns the model names."""
    assert release.s3 is not None
    layout = token_model(release)
    client = release.s3.client()
    model_py = Path(__file__).with_name("openvino_model.py")
    made = []
    for name, (version_folder, plugin) in sorted(release.ovms_models.items()):
        if name == layout.token_model:
            key = layout.triton_config(name, LOCAL_TRITON_CONFIG)
        elif name == layout.text_model:
            key = layout.triton_config(name)
        else:
            raise StackError(
                f"OVMS serves {name}, which is neither {layout.token_model} nor {layout.text_model}"
            )
        text = client.get_object(release.bucket, key).read().decode()
        version = int(version_folder.name)
        target = folder / name / str(version)
        target.mkdir(parents=True, exist_ok=True)
        for file in (IR_FILE, IR_WEIGHTS):
            _link(version_folder / file, target / file)
        shutil.copyfile(model_py, target / PYTHON_MODEL)
        (folder / name / CONFIG_FILE).write_text(triton_config(text, version=version, plugin=plugin))
        if name == layout.token_model:  # its outputs name the label file (Triton's classification extension)
            client.fget_object(release.bucket, layout.labels, str(folder / name / LABELS_FILE))
        made.append(name)
    return made


def triton_config(text: str, *, version: int, plugin: dict[str, Any]) -> str:
    """An ONNX Runtime side's config.pbtxt turned into the OpenVINO python model's: the same name,
    inputs, outputs and batching; the python backend (an ensemble's steps dropped); the IR's version;
    the plugin_config as JSON (single-quoted: protobuf text format takes either quote)."""
    lines = []
    for line in text.split("ensemble_scheduling", 1)[0].splitlines():
        if line.startswith(("backend:", "platform:", "instance_group", "#")):
            continue
        lines.append(line)
    body = _VERSIONS.sub(f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}", "\n".join(lines))
    plugin_json = json.dumps(plugin, sort_keys=True)
    if "'" in plugin_json:
        raise StackError(f"plugin_config {plugin_json} has a quote that the config cannot carry")
    return (
        body.rstrip()
        + '\nbackend: "python"\n'
        + "# devstack.runtimes: the OVMS IR compiled by OpenVINO under OVMS's plugin_config.\n"
        + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
        + f"parameters {{ key: \"plugin_config\" value: {{ string_value: '{plugin_json}' }} }}\n"
    )


def _link(source: Path, target: Path) -> None:
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem
        shutil.copyfile(source, target)


# -- the OpenVINO side's Triton --------------------------------------------------------------------


@dataclass
class OpenVinoTriton:
    """tritonserver with the release's rendered arguments and environment, a local repository and free
    loopback ports."""

    release: Release
    repository: Path
    ports: dict[str, int] = field(default_factory=dict)
    process: ManagedProcess | None = None

    def start(self, *, timeout: float = 180) -> float:
        """Start it; the seconds until /v2/health/ready answered 200 (every model loaded)."""
        pod = self.release.render.pod("Deployment", "triton")
        item = container(pod, "triton")
        rendered = self.release.loop.argv(pod, item)[1:]
        self.ports = {name: free_port() for name in SERVERS[Server.TRITON].ports}
        args = [a for a in rendered if not a.startswith(_REPLACED)]
        args += [f"--model-repository={self.repository}"]
        args += [f"--{name}-port={port}" for name, port in self.ports.items()]
        root = self.repository.parent
        self.process = ManagedProcess(
            "tritonserver (openvino)", command(args), log_path=root / "triton-openvino.log",
            env=environment(self.release.loop.env(pod, item)),
        )  # fmt: skip
        started = time.monotonic()
        self.process.start()
        ready = f"http://127.0.0.1:{self.ports['http']}/v2/health/ready"
        self.process.wait_until(lambda: http_status(ready) == 200, timeout=timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=40)


# -- figures --------------------------------------------------------------------------------------


def load_times(release: Release, folder: Path) -> dict[str, float]:
    """Seconds to make each model ready to answer, in this process: an ONNX Runtime session of model.onnx
    (the bucket's file), and each OVMS IR compiled by OpenVINO under its rendered plugin_config."""
    import onnxruntime

    assert release.s3 is not None
    layout = token_model(release)
    version = int(release.ovms_models[layout.token_model][0].name)
    onnx = folder / "model.onnx"
    release.s3.client().fget_object(release.bucket, layout.onnx(version), str(onnx))
    times = {}
    started = time.monotonic()
    onnxruntime.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    times[f"{ONNXRUNTIME} {layout.token_model} (session)"] = time.monotonic() - started
    for name, (version_folder, plugin) in sorted(release.ovms_models.items()):
        started = time.monotonic()
        ovms.compile_model(version_folder / IR_FILE, plugin)
        times[f"{OPENVINO} {name} (compile)"] = time.monotonic() - started
    onnx.unlink()
    return {k: round(v, 2) for k, v in times.items()}


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (tritonserver and its python-backend stubs)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
        rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
        total += int(rss) * 1024
    return total


@contextmanager
def peak_rss(pids: dict[str, int], *, every: float = 0.5) -> Iterator[dict[str, int]]:
    """Sample each named process tree's RSS while the block runs; yields name -> peak bytes."""
    peaks = dict.fromkeys(pids, 0)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for name, pid in pids.items():
                peaks[name] = max(peaks[name], tree_rss(pid))
            done.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peaks
    finally:
        done.set()
        thread.join()


# -- the load tests and their comparison ------------------------------------------------------------


def load_test(
    release: Release, openvino: OpenVinoTriton, output: Path, *, text: bool, levels: Sequence[int],
    duration: str, warmup: str,
) -> dict[str, Any]:  # fmt: skip
    """`loadtest run` with both targets, the same levels and inputs; returns the report.json."""
    assert release.s3 is not None
    service = f"{release.render.release}-emotion-serving-triton"
    ports = SERVERS[Server.TRITON].ports
    grpc, metrics = (release.loop.address(service, ports[p]) for p in ("grpc", "metrics"))
    completed = release.run_argv(
        [sys.executable, "-m", "loadtest", "run",
         f"--target={ONNXRUNTIME}={grpc}", f"--metrics={ONNXRUNTIME}=http://{metrics}/metrics",
         f"--target={OPENVINO}=127.0.0.1:{openvino.ports['grpc']}",
         f"--metrics={OPENVINO}=http://127.0.0.1:{openvino.ports['metrics']}/metrics",
         "--protocol=grpc", f"--input={'text' if text else 'tokens'}", f"--package=s3://{release.bucket}",
         f"--endpoint={release.s3.endpoint}", f"--concurrency={','.join(map(str, levels))}",
         f"--duration={duration}", f"--warmup={warmup}", f"--output={output}"],
        release.s3.env(),
        timeout=1200,
    )  # fmt: skip
    # Exit 0 or a threshold breach (the client lagging on a busy laptop) still leaves a full report.
    report = output / "report.json"
    if not report.is_file():
        raise StackError(f"loadtest wrote no report: {completed.stderr.strip()[-500:]}")
    return json.loads(report.read_text())


def comparison(report: dict[str, Any], *, kind: str) -> tuple[list[str], str]:
    """A two-column table (loadtest.columns' rows, one block per level) and the verdict at the highest level
    both targets ran: throughput and p99, each with `loadtest compare`'s noise test (Welch, 99 %)."""
    from loadtest.columns import COLUMNS, level_name
    from loadtest.cost import versus

    by_level: dict[str, dict[str, Any]] = {}
    for result in report["results"]:
        by_level.setdefault(level_name(result), {})[result["target"]] = result
    both = [(level, r) for level, r in by_level.items() if ONNXRUNTIME in r and OPENVINO in r]
    if not both:
        return [], f"{kind}: not comparable (no level has both targets)"
    width = max(len(c.title) for c in COLUMNS) + 4
    cells = [c.text(r) for results in by_level.values() for r in results.values() for c in COLUMNS]
    value = max(len(text) for text in [*cells, ONNXRUNTIME, OPENVINO]) + 2
    lines = [f"{kind:<{width}}{ONNXRUNTIME:>{value}}{OPENVINO:>{value}}"]
    for level, results in both:
        lines.append(f"  {level}")
        for column in COLUMNS:
            a, b = column.text(results[ONNXRUNTIME]), column.text(results[OPENVINO])
            lines.append(f"    {column.title:<{width - 4}}{a:>{value}}{b:>{value}}")
    level, results = both[-1]
    changes = versus(results[ONNXRUNTIME], results[OPENVINO], min_change=MIN_CHANGE)
    parts = []
    for metric in ("req/s", "p99 ms"):
        change = changes[metric]
        parts.append(f"{metric} {change.new:.4g} vs {change.old:.4g} {_judged(change)}")
    invalid = [f"{name} invalid: {r['invalid_reason']}" for name, r in results.items() if not r["valid"]]
    if invalid:  # the figures include the client's own lateness: say so next to them
        parts.append(", ".join(invalid))
    return lines, f"{kind} {level}: {OPENVINO} vs {ONNXRUNTIME}: " + "; ".join(parts)


def _judged(change: Any) -> str:
    if change.verdict == "unknown":
        return "(noise unknown: fewer than 3 intervals)"
    relative = f"{change.relative:+.1%}"
    if change.verdict == "same":
        return f"({relative}, within run-to-run noise or under {MIN_CHANGE:.0%})"
    return f"({relative}, {OPENVINO} {change.verdict}, beyond run-to-run noise)"


@dataclass(frozen=True)
class Compared:
    tables: list[str]
    verdict: str
    figures: dict[str, Any]
    reports: dict[str, str]


def compare_runtimes(
    release: Release, out: Path, *, duration: str, warmup: str = "2s", levels: Sequence[int] = (1, 4)
) -> Compared:
    """The OpenVINO side built and started next to the release's Triton (started, check_ovms done), both
    load-tested with token ids and raw text, compared; figures: start to ready, load times, peak RSS."""
    if release.triton is None or release.triton.pid is None or not release.ovms_models:
        raise StackError("compare_runtimes needs the release's Triton started and check_ovms done")
    out.mkdir(parents=True, exist_ok=True)
    repository = out / "openvino-repository"
    shutil.rmtree(repository, ignore_errors=True)
    openvino_repository(release, repository)
    openvino = OpenVinoTriton(release, repository)
    figures: dict[str, Any] = {}
    try:
        figures["openvino_triton_start_to_ready_s"] = round(openvino.start(), 1)
        assert openvino.process is not None
        assert openvino.process.pid is not None
        pids = {ONNXRUNTIME: release.triton.pid, OPENVINO: openvino.process.pid}
        figures["rss_ready_mib"] = {name: _mib(tree_rss(pid)) for name, pid in pids.items()}
        figures["load_s"] = load_times(release, out)
        tables, verdicts, reports = [], [], {}
        with peak_rss(pids) as peaks:
            for kind, text in (("tokens", False), ("text", True)):
                folder = out / f"report-{kind}"
                report = load_test(release, openvino, folder, text=text, levels=levels,
                                   duration=duration, warmup=warmup)  # fmt: skip
                lines, verdict = comparison(report, kind=kind)
                tables += lines
                verdicts.append(verdict)
                reports[kind] = str(folder / "report.md")
        figures["rss_peak_under_load_mib"] = {name: _mib(peak) for name, peak in peaks.items()}
    finally:
        openvino.stop()
    return Compared(tables=tables, verdict="; ".join(verdicts), figures=figures, reports=reports)


def _mib(value: int) -> int:
    return round(value / 2**20)


def write_markdown(compared: Compared, path: Path) -> None:
    """comparison.md: what is compared, the two columns, the verdict, the figures, the full reports."""
    lines = [
        "# Runtime comparison (make demo)",
        "",
        WHAT,
        "",
        "```",
        *compared.tables,
        "```",
        "",
        f"**Verdict**: {compared.verdict}",
        "",
        "Figures (this machine, this run):",
        "",
        "```",
        json.dumps(compared.figures, indent=2),
        "```",
        "",
        *[f"- {kind}: [{Path(p).parent.name}/report.md]({Path(p).parent.name}/report.md)"
          for kind, p in compared.reports.items()],
        "",
    ]  # fmt: skip
    path.write_text("\n".join(lines))
