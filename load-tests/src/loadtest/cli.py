"""The `loadtest` command line: parse and check every option, then call the library.

Exit codes are the project's one table (emotion_contract.errors, docs/contracts.md); the contract's boundary
prints an expected failure on one line and handles SIGTERM as Ctrl-C (a partial report, exit 130).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotion_contract.cli import add_log_format, add_old_spelling, boundary, exit_codes_epilog
from emotion_contract.errors import BadInput, ExitCode
from emotion_contract.logs import log
from loadtest import __version__
from loadtest.flags import (
    Parser,
    duration,
    fraction,
    input_kinds,
    int_list,
    non_negative_int,
    positive_duration,
    positive_float,
    positive_int,
    rate,
    rate_list,
    timeout,
)

if TYPE_CHECKING:
    from loadtest.package import PackageRef

EXIT_CODES = (
    ExitCode.OK, ExitCode.BUG, ExitCode.USAGE, ExitCode.BAD_INPUT, ExitCode.CREDENTIALS, ExitCode.UNAVAILABLE,
    ExitCode.THRESHOLD, ExitCode.INVALID, ExitCode.SMOKE, ExitCode.REGRESSION, ExitCode.INTERRUPTED,
)  # fmt: skip


def _add_source_options(parser: argparse.ArgumentParser) -> None:
    """Where the targets are and where the inputs come from: the same for `run` and `smoke`."""
    parser.add_argument(
        "--target", action="append", default=[], metavar="NAME=HOST:PORT", help="a server (repeat for each)"
    )
    parser.add_argument(
        "--protocol", choices=("grpc", "http"), default="grpc", help="KServe v2 over gRPC or HTTP"
    )
    parser.add_argument("--name", default="emotion", help="the packaged model's name (default: emotion)")
    add_old_spelling(parser, "--model", "--name", dest="name")
    parser.add_argument(
        "--package",
        required=True,
        metavar="DIR|s3://BUCKET[/PREFIX]",
        help="the packaged model: a folder, or a bucket (keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
    )
    parser.add_argument(
        "--endpoint", metavar="URL", help="S3 endpoint for an s3:// package, http(s)://host:port"
    )
    add_old_spelling(parser, "--s3-endpoint", "--endpoint", dest="endpoint")
    parser.add_argument(
        "--ca-bundle", type=Path, metavar="FILE", help="CA certificates for an https endpoint"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--version", type=positive_int, help="the package version to use (default: the one READY names)"
    )
    which.add_argument(
        "--request", metavar="R",
        help="the version model request R was published as (manifests/<name>/requests/R.json: what the "
        "chart's unpinned servers serve)",
    )  # fmt: skip
    parser.add_argument(
        "--corpus",
        type=Path,
        metavar="FILE",
        help="sentences: .csv with a `text` column, or text, one per line",
    )
    parser.add_argument(
        "--tolerance",
        type=positive_float,
        default=1e-3,
        help="largest probability drift from the reference that still counts as correct (default: 1e-3)",
    )
    parser.add_argument(
        "--timeout", type=timeout, default=10.0, help="per-request timeout, at most 10m (default: 10s)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="loadtest",
        description="Fair, open-loop-correct load tests of KServe v2 servers.",
        epilog=exit_codes_epilog(*EXIT_CODES),
    )
    parser.add_argument("--version", action="version", version=f"loadtest {__version__}")
    add_log_format(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_run_parser, _smoke_parser, _compare_parser, _release_parser):
        command = add(commands)
        command.set_defaults(command_parser=command)
    return parser


def _run_parser(commands: Any) -> argparse.ArgumentParser:
    run = commands.add_parser("run", help="run load levels against every target and write a report")
    _add_source_options(run)
    run.add_argument(
        "--metrics",
        action="append",
        default=[],
        metavar="NAME=URL",
        help="a target's Prometheus endpoint (or none)",
    )
    run.add_argument(
        "--input",
        choices=("tokens", "text"),
        default="tokens",
        help="token ids, or raw text (the manifest's text model, NAME-text)",
    )
    run.add_argument(
        "--served-model", metavar="NAME", help="the model's name on the servers (default: the manifest's)"
    )
    load = run.add_mutually_exclusive_group(required=True)
    load.add_argument("--concurrency", type=int_list, metavar="N[,N...]", help="closed loop: users per level")
    load.add_argument(
        "--rate", type=rate_list, metavar="R[,R...]", help="open loop: requests per second per level"
    )
    run.add_argument(
        "--arrival", choices=("fixed", "poisson"), default="fixed", help="open loop: request spacing"
    )
    run.add_argument(
        "--slo-search", action="store_true", help="find the highest rate with p99 under --slo-p99-ms"
    )
    run.add_argument("--max-rate", type=rate, default=100000.0, help="SLO search: highest rate to try")
    run.add_argument(
        "--search-steps", type=positive_int, default=5, help="SLO search: bisection probes (default 5)"
    )
    _timing_options(run)
    _threshold_options(run)
    _cost_options(run)
    run.add_argument("--output", type=Path, required=True, help="folder for report.json, report.md, plots/")
    run.add_argument(
        "--path", choices=("direct", "in-cluster", "port-forward"), default="direct",
        help="how the client reaches the servers, stated in the report (`release` sets it)",
    )  # fmt: skip
    run.add_argument(
        "--keep-report", metavar="RUN",
        help="also keep the report in the package's bucket under reports/<name>/RUN/ (an s3:// package; "
        "written once: a RUN that has a report is refused before the load)",
    )  # fmt: skip
    return run


def _timing_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--duration", type=positive_duration, default=30.0, help="measured time per level (default: 30s)"
    )
    run.add_argument(
        "--warmup", type=duration, default=5.0, help="unmeasured time before each level (default: 5s)"
    )
    run.add_argument(
        "--interval", type=positive_duration, default=1.0, help="time slice for the per-interval figures (1s)"
    )
    run.add_argument(
        "--max-lag",
        type=positive_duration,
        default=0.01,
        help="client lag (p99) beyond which a level is invalid (10ms)",
    )
    run.add_argument("--batch-size", type=positive_int, default=1, help="sentences per request (default: 1)")
    run.add_argument("--workers", type=positive_int, help="worker processes (default: CPUs, at most 8)")
    run.add_argument(
        "--max-in-flight",
        type=positive_int,
        default=1000,
        help="open loop: requests out at once (default: 1000)",
    )
    run.add_argument(
        "--seed", type=non_negative_int, default=1, help="seed of the Poisson arrivals (0 or more)"
    )


def _cost_pair(parse: Any, what: str) -> Any:
    """An argparse type for NAME=VALUE with VALUE read by `parse` (loadtest.cost): malformed is exit 2."""

    def convert(text: str) -> tuple[str, Any]:
        name, sep, value = text.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: expected NAME={what}")
        try:
            return name.strip(), parse(value.strip())
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{text!r}: {err}") from None

    return convert


def _cost_options(run: argparse.ArgumentParser) -> None:
    from loadtest.cost import parse_price, parse_resources

    run.add_argument(
        "--price",
        action="append",
        default=[],
        type=_cost_pair(parse_price, "USD_PER_HOUR"),
        metavar="NAME=USD_PER_HOUR",
        help="what serving a target costs per hour, for the report's cost per million requests (no default)",
    )
    run.add_argument(
        "--resources",
        action="append",
        default=[],
        type=_cost_pair(parse_resources, "cpu:N,gpu:N"),
        metavar="NAME=cpu:N[,gpu:N]",
        help="a target's CPU cores and GPUs, for throughput per core and per GPU",
    )


def _per_target(pairs: list[tuple[str, Any]], targets: Sequence[Any], *, flag: str) -> dict[str, Any]:
    """--price / --resources pairs by target name: each name a --target, once (exit 3 otherwise)."""
    names = {t.name for t in targets}
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name not in names:
            raise BadInput(f"{flag} {name}: no --target of that name")
        if name in found:
            raise BadInput(f"{flag} {name}: given twice")
        found[name] = value
    return found


def _threshold_options(run: argparse.ArgumentParser) -> None:
    run.add_argument("--slo-p99-ms", type=positive_float, help="threshold: p99 latency bound in ms")
    run.add_argument(
        "--max-error-rate", type=fraction, default=0.01, help="threshold: errors / requests (0.01)"
    )
    run.add_argument(
        "--max-mismatch-rate",
        type=fraction,
        default=0.0,
        help="threshold: wrong answers / answers (default: 0)",
    )
    run.add_argument(
        "--stall-share",
        type=fraction,
        default=0.1,
        help="threshold: an interval whose throughput is under this share of the level's median is a stall "
        "(default: 0.1; 0: off)",
    )


def _smoke_parser(commands: Any) -> argparse.ArgumentParser:
    smoke = commands.add_parser(
        "smoke", help="a few labelled sentences to every target: shapes, reference, agreement"
    )
    _add_source_options(smoke)
    smoke.add_argument(
        "--input",
        type=input_kinds,
        metavar="KINDS",
        help="models to ask: tokens, text or tokens,text (default: what the package has)",
    )
    smoke.add_argument("--sentences", type=positive_int, default=12, help="sentences to send (default: 12)")
    return smoke


def _compare_parser(commands: Any) -> argparse.ArgumentParser:
    compare = commands.add_parser("compare", help="is NEW better or worse than OLD beyond run-to-run noise?")
    compare.add_argument("old", type=Path, metavar="OLD", help="report.json or its folder")
    compare.add_argument("new", type=Path, metavar="NEW", help="report.json or its folder")
    compare.add_argument(
        "--min-change",
        type=fraction,
        default=0.05,
        help="smallest relative change that counts (default: 0.05)",
    )
    return compare


def _release_parser(commands: Any) -> argparse.ArgumentParser:
    release = commands.add_parser(
        "release",
        help="`run` against a deployed release: the chart's load-test Job next to the servers (what `make "
        "loadtest` runs), or here through kubectl port-forward",
        description="By default renders the chart's load-test Job with the release's values "
        "(helm get values), "
        "applies it, waits for it and downloads the report it kept in the bucket; its exit code is the "
        "load test's. With --port-forward: finds the release's ovms, triton and minio Services by the "
        "chart's labels, forwards their ports and runs `loadtest run` here. Either way with the options "
        "after `--` (levels, duration, thresholds, prices...). Port-forward's --resources are one pod's CPU "
        "request and GPUs of each server's Deployment, unless given after `--`.",
    )
    release.add_argument("--release", required=True, help="the Helm release name")
    release.add_argument("--namespace", default="default", help="its namespace (default: default)")
    release.add_argument("--kubectl", default="kubectl", help="the kubectl to use (default: kubectl on PATH)")
    release.add_argument(
        "--protocol", choices=("grpc", "http"), default="grpc", help="KServe v2 over gRPC or HTTP"
    )
    release.add_argument(
        "--bucket", default="models", help="port-forward: the bucket behind the release's MinIO (models)"
    )
    release.add_argument("--output", type=Path, required=True, help="folder for the report")
    release.add_argument(
        "--port-forward", action="store_true",
        help="run here, through kubectl port-forward (tunnelled: the latencies include the API server and "
        "the kubelet), instead of the chart's load-test Job next to the servers",
    )  # fmt: skip
    release.add_argument("--helm", default="helm", help="in-cluster: the helm to use (default: helm on PATH)")
    release.add_argument(
        "--chart", type=Path, default=Path("charts/emotion-serving"),
        help="in-cluster: the chart whose load-test Job runs (default: charts/emotion-serving)",
    )  # fmt: skip
    release.add_argument(
        "--run", help="in-cluster: the run's name, its folder in the bucket (default: <release>-<UTC time>)"
    )
    release.add_argument(
        "run_args", nargs=argparse.REMAINDER, metavar="-- RUN-OPTIONS", help="options for `run`"
    )
    return release


def _check(args: argparse.Namespace) -> None:
    """Checks that involve several options; errors read like argparse's own."""
    parser = args.command_parser
    if args.command == "run":
        if args.slo_search and (args.rate is None or args.slo_p99_ms is None):
            parser.error("--slo-search needs --rate START and --slo-p99-ms")
        if args.interval > args.duration:
            parser.error("--interval must be at most --duration")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check(args)
    handler = {"run": _run, "smoke": _smoke, "compare": _compare, "release": _release}[args.command]
    return boundary("loadtest", lambda: handler(args), log_format=args.log_format)


def _run(args: argparse.Namespace) -> ExitCode:
    from loadtest.runner import RunConfig, default_workers, run_load
    from loadtest.targets import parse_targets

    targets = parse_targets(args.target, args.metrics, protocol=args.protocol)
    config = RunConfig(
        targets=targets,
        protocol=args.protocol,
        model=args.served_model,
        text=args.input == "text",
        closed=args.concurrency is not None,
        levels=args.concurrency or args.rate,
        poisson=args.arrival == "poisson",
        slo_search=args.slo_search,
        max_rate=args.max_rate,
        search_steps=args.search_steps,
        duration=args.duration,
        warmup=args.warmup,
        timeout=args.timeout,
        interval=args.interval,
        max_lag_ms=args.max_lag * 1000.0,
        batch_size=args.batch_size,
        workers=args.workers or default_workers(),
        max_in_flight=args.max_in_flight,
        tolerance=args.tolerance,
        slo_p99_ms=args.slo_p99_ms,
        max_error_rate=args.max_error_rate,
        max_mismatch_rate=args.max_mismatch_rate,
        stall_share=args.stall_share,
        seed=args.seed,
        prices=_per_target(args.price, targets, flag="--price"),
        resources=_per_target(args.resources, targets, flag="--resources"),
        path=args.path,
    )
    package = _package_ref(args)
    kept = None
    if args.keep_report is not None:
        from loadtest.kept import check_new

        kept = package.store()
        check_new(kept, name=args.name, run=args.keep_report)
    code, report = run_load(config=config, package=package, corpus=args.corpus, output=args.output)
    for problem in report["problems"]:
        log(problem)
    if kept is not None:
        from loadtest.kept import keep_report

        keys = keep_report(args.output, kept, name=args.name, run=args.keep_report)
        log(f"report kept in the bucket: {len(keys)} files under {keys[-1].rsplit('/', 1)[0]}/")
    print(args.output)
    return code


def _package_ref(args: argparse.Namespace) -> PackageRef:
    from loadtest.package import PackageRef

    return PackageRef(
        source=args.package,
        name=args.name,
        version=args.version,
        request=args.request,
        s3_endpoint=args.endpoint,
        ca_bundle=args.ca_bundle,
    )


def _smoke(args: argparse.Namespace) -> ExitCode:
    from loadtest.smoke import run_smoke

    lines = run_smoke(
        targets=args.target,
        protocol=args.protocol,
        package=_package_ref(args),
        inputs=args.input,
        corpus=args.corpus,
        sentences=args.sentences,
        tolerance=args.tolerance,
        timeout=args.timeout,
    )
    print("\n".join(lines))
    return ExitCode.OK


def _compare(args: argparse.Namespace) -> ExitCode:
    from loadtest.compare import compare_reports, markdown, unmatched
    from loadtest.report import load_report

    old, new = load_report(args.old), load_report(args.new)
    changes = compare_reports(old, new, min_change=args.min_change)
    if not changes:
        raise BadInput(f"{args.old} and {args.new} have no level in common")
    print(markdown(changes, unmatched(old, new)), end="")
    worse = [c for c in changes if c.verdict == "worse"]
    if worse:
        log(f"{len(worse)} figure(s) worse beyond noise")
        return ExitCode.REGRESSION
    return ExitCode.OK


#: `release` sets these itself from the Services it finds.
_RELEASE_OWNS = ("--target", "--metrics", "--protocol", "--output", "--path")


def _release(args: argparse.Namespace) -> ExitCode:
    if not args.port_forward:
        from loadtest.incluster import Cluster, run_in_cluster, run_name

        run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
        cluster = Cluster(
            kubectl=args.kubectl, helm=args.helm, namespace=args.namespace, release=args.release
        )
        return run_in_cluster(
            cluster, chart=args.chart, run=args.run or run_name(args.release), protocol=args.protocol,
            run_args=run_args, output=args.output,
        )  # fmt: skip
    return _release_port_forward(args)


def _release_port_forward(args: argparse.Namespace) -> ExitCode:
    from loadtest.release import (
        SERVERS,
        discover,
        list_objects,
        pod_resources,
        port_forwards,
        resources_arguments,
        run_arguments,
    )

    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    if not run_args:  # the release's own loadtest.args: one place for the default levels, the chart
        from loadtest.incluster import Cluster, release_run_args

        cluster = Cluster(
            kubectl=args.kubectl, helm=args.helm, namespace=args.namespace, release=args.release
        )
        run_args = release_run_args(cluster)
    owned = [a for a in run_args if a.split("=")[0] in _RELEASE_OWNS]
    if owned:
        raise BadInput(
            f"{owned[0]}: `release` sets it from the release's Services; give --protocol to release"
        )
    cluster = {"kubectl": args.kubectl, "namespace": args.namespace, "release": args.release}
    services = discover(list_objects("services", **cluster), release=args.release)
    # The cost section's resources: one pod's reservation of each server, unless given by hand.
    if not any(a.split("=")[0] == "--resources" for a in run_args):
        reserved = pod_resources(list_objects("deployments", **cluster), release=args.release)
        run_args = [*resources_arguments(reserved), *run_args]
    with_package = any(a.split("=")[0] == "--package" for a in run_args)
    wanted = [services[c] for c in (*SERVERS, *(() if with_package else ("minio",))) if c in services]
    with port_forwards(wanted, kubectl=args.kubectl, namespace=args.namespace) as local:
        forwarded = run_arguments(
            local, protocol=args.protocol, bucket=args.bucket, with_package=with_package
        )
        inner = build_parser().parse_args(
            ["run", *forwarded, "--path", "port-forward", "--output", str(args.output), *run_args]
        )
        _check(inner)
        return _run(inner)


if __name__ == "__main__":
    sys.exit(main())
