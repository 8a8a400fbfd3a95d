"""`make demo`: the chart's release run on this machine, end to end, then a summary and a report.

The chart is rendered with examples/values/local.yaml and run by devstack.release: the S3 gateway
as its MinIO, the packager Job (the default model from the HuggingFace hub when it answers; without
it, a clearly labelled local stand-in of the same shape), the servers' `wait`, Triton from the
bucket, OVMS's rendered configuration checked and its models compiled with the OpenVINO runtime,
Prometheus on the rendered ServiceMonitors and rules, the runtime comparison (devstack.runtimes: the
classifier under ONNX Runtime and the OVMS IR under OpenVINO with the rendered plugin_config, both
through the local Triton, the same client, inputs and load; token ids and raw text) and the `helm
test` command. Everything is stopped at the end, whatever happens. The summary ends with the
two-column comparison and its verdict; comparison.md in the output folder is the report.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from devstack.chart import Render
from devstack.errors import StackError
from devstack.paths import REPO_ROOT
from devstack.release import Release, checkpoint_values, rule_files
from devstack.runtimes import WHAT, Compared, compare_runtimes, write_markdown

DEFAULT_MODEL = "seara/rubert-tiny2-cedr-russian-emotion"
VALUES = REPO_ROOT / "examples" / "values" / "local.yaml"


class Demo:
    def __init__(self, out: Path, *, model: str, duration: str) -> None:
        self.out = out
        self.model = model
        self.duration = duration
        self.timings: list[tuple[str, float]] = []
        self.compared: Compared | None = None

    @contextmanager
    def step(self, title: str) -> Iterator[None]:
        print(f"==> {title}", flush=True)
        started = time.monotonic()
        yield
        self.timings.append((title, time.monotonic() - started))

    def choose_model(self) -> tuple[list[Path], str]:
        """Values for the packager's model, and how to describe it."""
        if hub_reachable(self.model):
            return [], f"{self.model} from the HuggingFace hub"
        checkpoint = self.out / "stand-in"
        if not (checkpoint / "config.json").is_file():
            corpus = resources.files("loadtest").joinpath("data", "corpus_ru.csv")
            _check(
                [sys.executable, "-m", "model_packager", "--log-format", "text", "stand-in",
                 "--output", str(checkpoint), "--corpus", str(corpus)],
                "model-packager stand-in",
            )  # fmt: skip
        values = checkpoint_values(self.out, checkpoint)
        banner = "!" * 100
        print(
            f"{banner}\nOFFLINE: the HuggingFace hub does not answer; the packager gets a local STAND-IN:\n"
            f"random weights shaped like {self.model} ({checkpoint}).\n"
            f"Conversion, serving and load figures are real; the predicted emotions mean nothing.\n{banner}",
            flush=True,
        )
        return [values], f"a local stand-in shaped like {self.model} (random weights; offline)"

    def run(self) -> dict[str, Any]:
        self.out.mkdir(parents=True, exist_ok=True)
        with self.step("choose the model"):
            extra, described = self.choose_model()
        with self.step("render the chart (examples/values/local.yaml)"):
            render = Render.template(release="demo", values=[VALUES, *extra])
        release_root = self.out / f"release-{time.strftime('%Y%m%d-%H%M%S')}"
        summary: dict[str, Any] = {"model": described}
        with Release(render=render, root=release_root) as release:
            with self.step("start the S3 server as the chart's MinIO"):
                release.start_s3()
            with self.step("run the packager Job (build, prove, publish)"):
                job = release.run("Job", "packager", "packager")
                _completed(job, "the packager Job")
                summary["packager"] = json.loads(job.stdout.strip().splitlines()[-1])
            with self.step("run the servers' fetch initContainers (one version each, into the pod)"):
                for component in ("ovms", "triton"):
                    _completed(release.fetch(component), f"{component} fetch")
            with self.step("start Triton on its fetched repository"):
                started = time.monotonic()
                release.start_triton()
                triton_ready_s = round(time.monotonic() - started, 1)
            with self.step("check OVMS's rendered configuration; compile its models with OpenVINO"):
                problems, compiled = release.check_ovms()
                if problems:
                    raise StackError("OVMS: " + "; ".join(problems))
                summary["ovms_models_compiled"] = sorted(compiled)
            with self.step("start Prometheus on the rendered ServiceMonitors and rules"):
                prometheus, skipped = release.start_prometheus(rule_files=rule_files(render, release_root))
                summary["not_scraped"] = skipped
            with self.step(
                f"compare the runtimes: ONNX Runtime and OpenVINO through Triton ({self.duration} per level)"
            ):
                compared = compare_runtimes(release, self.out / "comparison", duration=self.duration)
                compared.figures["onnxruntime_triton_start_to_ready_s"] = triton_ready_s
                summary["compared"] = WHAT
                summary["load"] = [
                    line
                    for p in compared.reports.values()
                    for line in load_lines(Path(p).with_name("report.json"))
                ]
                summary["figures"] = compared.figures
                summary["report"] = str(self.out / "comparison" / "comparison.md")
                write_markdown(compared, Path(summary["report"]))
            with self.step("run the helm test command"):
                test, not_here = release.helm_test()
                _completed(test, "the helm test command")
                summary["helm_test"] = test.stdout.strip().splitlines()[-1]
                summary["helm_test_skipped"] = not_here
            rate = prometheus.wait_for('emotion:requests_success:rate{server="triton"}', timeout=60)
            summary["prometheus_triton_rate"] = round(float(rate[0]["value"][1]), 2)
        summary["timings_s"] = {title: round(seconds, 1) for title, seconds in self.timings}
        self.compared = compared
        return summary


def load_lines(report: Path) -> list[str]:
    """One line per target and level of a loadtest report.json (loadtest.columns.summary_line)."""
    from loadtest.columns import summary_line

    return [summary_line(result) for result in json.loads(report.read_text())["results"]]


def hub_reachable(model: str, timeout: float = 5.0) -> bool:
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(model, timeout=timeout)
    except Exception:  # offline, DNS, proxy, HTTP errors: all mean "use the stand-in"
        return False
    return True


def _completed(result: subprocess.CompletedProcess[str], what: str) -> None:
    if result.returncode:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise StackError(f"{what} failed with exit code {result.returncode}: {last}")


def _check(argv: list[str], what: str) -> None:
    _completed(subprocess.run(argv, capture_output=True, text=True, check=False), what)


def main(out: Path, *, model: str = DEFAULT_MODEL, duration: str = "10s") -> int:
    """The demo; a StackError reaches the CLI's boundary (`devstack: <message>`, exit 6)."""
    started = time.monotonic()
    demo = Demo(out, model=model, duration=duration)
    summary = demo.run()
    print("\n==> summary")
    print(yaml.safe_dump(summary, sort_keys=False, allow_unicode=True))
    assert demo.compared is not None
    print("==> comparison: the same Triton, client, inputs and load; the runtime differs")
    print("\n".join(demo.compared.tables))
    print(f"verdict: {demo.compared.verdict}")
    print(f"demo: done in {time.monotonic() - started:.0f} s; report: {summary['report']}")
    return 0
