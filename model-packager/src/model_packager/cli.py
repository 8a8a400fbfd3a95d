"""model-packager: the command line, a thin layer over the library. `model-packager --help` lists it.

Every input is validated before any work starts; the contract's boundary (emotion_contract.cli) turns a
ToolError into `model-packager: <message>` on stderr and its exit code (docs/contracts.md), and SIGTERM
into exit 130. The result of a command is one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emotion_contract.cli import add_log_format, add_s3_options, boundary, exit_codes_epilog
from emotion_contract.errors import BadInput, ExitCode
from emotion_contract.logs import Reporter
from model_packager import __version__
from model_packager.credentials import SERVICE_ACCOUNT
from model_packager.sentences import default_sample, read_sentences
from model_packager.standin import DEFAULT_MARGIN

DEFAULT_SAMPLE_SIZE = 64
EXIT_CODES = (
    ExitCode.OK, ExitCode.BUG, ExitCode.USAGE, ExitCode.BAD_INPUT, ExitCode.PARITY, ExitCode.CREDENTIALS,
    ExitCode.UNAVAILABLE, ExitCode.TIMEOUT, ExitCode.CONFLICT, ExitCode.INTERRUPTED,
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def call() -> int:
        result = args.handler(args, Reporter())
        print(json.dumps(result, ensure_ascii=False, default=str))
        return int(ExitCode.OK)

    return boundary("model-packager", call, log_format=args.log_format)


# -- handlers -------------------------------------------------------------------------------------


def _build(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from model_packager.build import build

    options, sentences = _build_inputs(args)
    source = _resolve(args, reporter)
    tree = build(
        source=source,
        options=options,
        output=args.output,
        version=args.version,
        sentences=sentences,
        reporter=reporter,
    )
    return {"built": str(tree.root), "version": tree.version, "fingerprint": tree.manifest["fingerprint"]}


def _verify(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    if args.tree.startswith("s3://"):
        return _verify_bucket(args, reporter)
    from model_packager.manifest import LocalTree

    tree = LocalTree.open(Path(args.tree), args.name)
    with reporter.step("checksums", objects=len(tree.manifest["objects"])):
        problems = tree.verify()
    if problems:
        raise BadInput(f"{args.tree} does not match its manifest: {problems[0]} ({len(problems)} problems)")
    return {
        "tree": str(tree.root),
        "version": tree.version,
        "intact": True,
        "parity": tree.manifest["parity"],
    }


def _verify_bucket(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    """`verify s3://BUCKET --endpoint URL`: the version READY names, checked from the bucket alone."""
    from emotion_contract.layout import Layout
    from emotion_contract.s3 import Bucket, Endpoint
    from model_packager.audit import check_ready

    bucket_name = args.tree.removeprefix("s3://").rstrip("/")
    if not args.endpoint:
        raise BadInput(f"verify {args.tree} needs --endpoint, the S3 server that holds the bucket")
    bucket = Bucket(Endpoint(url=args.endpoint, bucket=bucket_name, ca_bundle=args.ca_bundle))
    layout = Layout(args.name)
    with reporter.step("audit", bucket=bucket_name, depth=args.depth):
        audit = check_ready(bucket, layout, depth=args.depth)
    if audit is None:
        raise BadInput(f"{args.tree} holds no published {args.name}: {layout.ready} is missing")
    if not audit.intact:
        raise BadInput(f"{args.tree} does not match its manifest: {audit.summary()}")
    return {
        "bucket": bucket_name,
        "name": args.name,
        "version": audit.version,
        "intact": True,
        "depth": args.depth,
    }


def _publish(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from model_packager.manifest import LocalTree
    from model_packager.publish import publish

    tree = LocalTree.open(args.tree, args.name)
    problems = tree.verify()
    if problems:
        raise BadInput(f"{args.tree} does not match its manifest: {problems[0]}; rebuild it")
    return publish(tree=tree, bucket=_bucket(args), reporter=reporter).as_dict()


def _run(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from model_packager.job import JobRequest, run_job
    from model_packager.lifecycle import Retention, check_request

    options, sentences = _build_inputs(args)
    retention = Retention(versions=args.keep_versions, keep=tuple(args.keep))
    retention.validate()
    if args.request is not None:
        check_request(args.request)
    request = JobRequest(
        model=args.model,
        revision=args.revision,
        options=options,
        sentences=sentences,
        work_dir=args.work_dir,
        request=args.request,
        retention=retention,
    )
    result = run_job(request, bucket=_bucket(args), reporter=reporter)
    return {**result.as_dict(), "request": args.request, "deleted_versions": result.deleted}


def _wait(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from model_packager.wait import check_timing, wait_for

    check_timing(timeout=args.timeout, poll=args.poll)
    version = wait_for(
        bucket=_bucket(args, budget=5.0),
        name=args.name,
        version=args.version,
        timeout=args.timeout,
        reporter=reporter,
        poll=args.poll,
        depth=args.depth,
    )
    return {"name": args.name, "version": version}


def _fetch(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from emotion_contract.servers import Server
    from model_packager.fetch import Wanted, fetch
    from model_packager.wait import check_timing

    wanted = Wanted(version=args.version, request=args.request)
    wanted.validate()
    check_timing(timeout=args.timeout, poll=args.poll)
    return fetch(
        bucket=_bucket(args, budget=5.0),
        name=args.name,
        server=Server(args.server),
        wanted=wanted,
        output=args.output,
        timeout=args.timeout,
        poll=args.poll,
        reporter=reporter,
    )


def _credentials(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from model_packager.credentials import Cluster, SecretSpec, ensure_secrets

    specs = [SecretSpec.parse(text) for text in args.secret]
    labels = dict(_pair(text, "--label") for text in args.label)
    return ensure_secrets(Cluster.in_cluster(args.service_account), specs, labels=labels, reporter=reporter)


def _pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise BadInput(f"{flag} {text!r}: expected KEY=VALUE")
    return key, value


def _stand_in(args: argparse.Namespace, reporter: Reporter) -> dict[str, Any]:
    from model_packager.standin import build_stand_in

    sentences = read_sentences(args.corpus) if args.corpus else default_sample()
    with reporter.step("stand-in", sentences=len(sentences)):
        build_stand_in(output=args.output, sentences=sentences, seed=args.seed, margin=args.margin)
    return {"stand_in": str(args.output)}


# -- helpers --------------------------------------------------------------------------------------


def _resolve(args: argparse.Namespace, reporter: Reporter) -> Any:
    from model_packager.job import resolve_source

    return resolve_source(args.model, args.revision, reporter)


def _build_inputs(args: argparse.Namespace) -> tuple[Any, list[str]]:
    from model_packager.build import BuildOptions

    options = BuildOptions(
        name=args.name,
        max_length=args.max_length,
        precision=args.precision,
        inference_precision=args.inference_precision,
        activation=args.activation,
        triton_device=args.triton_device,
        text=args.text,
        tensorrt=args.tensorrt,
        max_batch_size=args.max_batch_size,
    )
    options.validate()
    sentences = read_sentences(args.sample_file) if args.sample_file else default_sample()
    if args.sample_size < 1:
        raise BadInput(f"sample size must be positive, not {args.sample_size}")
    return options, sentences[: args.sample_size]


def _bucket(args: argparse.Namespace, budget: float | None = None) -> Any:
    from emotion_contract.s3 import Bucket, Endpoint

    return Bucket(
        Endpoint(
            url=args.endpoint,
            bucket=args.bucket,
            ca_bundle=args.ca_bundle,
            budget=args.retry_budget if budget is None else budget,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="model-packager",
        description="Convert a HuggingFace sequence classifier to ONNX (Triton) and OpenVINO IR (OVMS), "
        "prove the conversions agree, and publish both model repositories to an S3 bucket.",
        epilog=exit_codes_epilog(*EXIT_CODES) + " Credentials: AWS_ACCESS_KEY_ID, "
        "AWS_SECRET_ACCESS_KEY, AWS_REGION; HF_TOKEN for private hub models.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_log_format(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = commands.add_parser("build", help="convert and prove; write a local tree in the bucket layout")
    _model_options(build)
    build.add_argument("--output", type=Path, required=True, help="a new folder for the tree")
    build.add_argument("--version", dest="version", type=int, default=1, help="version number in the tree")
    build.set_defaults(handler=_build)

    verify = commands.add_parser(
        "verify",
        help="check a built tree (a folder) or the published version (s3://BUCKET) against its manifest",
    )
    verify.add_argument("tree", metavar="TREE|s3://BUCKET")
    verify.add_argument("--name", default="emotion")
    verify.add_argument("--endpoint", help="S3 endpoint, http(s)://host:port (with s3://BUCKET)")
    verify.add_argument("--ca-bundle", type=Path, help="CA certificates for an https endpoint")
    _depth_option(verify, default="content")
    verify.set_defaults(handler=_verify)

    publish = commands.add_parser(
        "publish", help="upload a built tree: atomic, idempotent, never overwriting"
    )
    publish.add_argument("tree", type=Path)
    publish.add_argument("--name", default="emotion")
    _bucket_options(publish)
    publish.set_defaults(handler=_publish)

    run = commands.add_parser(
        "run", help="what the Job runs: build, prove and publish unless already published"
    )
    _model_options(run)
    _bucket_options(run)
    run.add_argument(
        "--work-dir", type=Path, help="scratch space for the build (default: the system temp dir)"
    )
    lifecycle = run.add_argument_group("lifecycle")
    lifecycle.add_argument(
        "--request",
        help="the release's model request (a hash of the model values): a run of a recorded request "
        "is done without the hub or a build; the version it publishes is recorded for it",
    )
    lifecycle.add_argument(
        "--keep-versions",
        type=int,
        default=0,
        help="keep the newest N complete versions (and those served or given to --keep); 0: keep all",
    )
    lifecycle.add_argument(
        "--keep", type=int, action="append", default=[], help="a version retention never deletes (repeat)"
    )
    run.set_defaults(handler=_run)

    _wait_and_stand_in(commands)
    return parser


def _wait_and_stand_in(commands: Any) -> None:
    wait = commands.add_parser(
        "wait", help="block until a version is published (the servers' initContainers)"
    )
    _bucket_options(wait, retry=False)
    wait.add_argument("--name", default="emotion")
    wait.add_argument(
        "--version", dest="version", type=int, help="wait for this version or newer (default: any)"
    )
    wait.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up (exit 7)")
    wait.add_argument("--poll", type=float, default=5.0, help="seconds between looks")
    _depth_option(wait, default="metadata")
    wait.set_defaults(handler=_wait)

    fetch = commands.add_parser(
        "fetch",
        help="download one version of one server's models into a local model repository (the servers' "
        "initContainers)",
    )
    _bucket_options(fetch, retry=False)
    fetch.add_argument("--name", default="emotion")
    fetch.add_argument("--server", choices=["ovms", "triton"], required=True)
    fetch.add_argument("--output", type=Path, required=True, help="the model repository folder")
    fetch.add_argument("--version", dest="version", type=int, help="this version (a pin)")
    fetch.add_argument("--request", help="the version the release's model request was published as")
    fetch.add_argument("--timeout", type=float, default=1800.0, help="seconds before giving up (exit 7)")
    fetch.add_argument("--poll", type=float, default=5.0, help="seconds between looks")
    fetch.set_defaults(handler=_fetch)

    credentials = commands.add_parser(
        "credentials",
        help="create the release's generated S3 Secrets once, through the API server (the chart's hook "
        "Job with minio.auth.generatedBy=job); an existing Secret is left as it is",
    )
    credentials.add_argument(
        "--secret", action="append", required=True, metavar="NAME=KEY:LENGTH[,KEY:LENGTH...]",
        help="a Secret to have, with random alphanumeric values of these lengths (repeat per Secret)",
    )  # fmt: skip
    credentials.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="a label of the Secrets it creates"
    )
    credentials.add_argument(
        "--service-account", type=Path, default=SERVICE_ACCOUNT, metavar="DIR",
        help=f"the pod's service account token, namespace and CA (default {SERVICE_ACCOUNT})",
    )  # fmt: skip
    credentials.set_defaults(handler=_credentials)

    stand_in = commands.add_parser(
        "stand-in",
        help="write a random-weight checkpoint shaped like the default model (offline demos and tests)",
    )
    stand_in.add_argument("--output", type=Path, required=True)
    stand_in.add_argument("--corpus", type=Path, help="sentences to train its WordPiece vocabulary on")
    stand_in.add_argument("--seed", type=int, default=0)
    stand_in.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN,
        help="every logit at least this far from the decision boundary, for any input (0: undecided)",
    )
    stand_in.set_defaults(handler=_stand_in)


def _model_options(command: argparse.ArgumentParser) -> None:
    group = command.add_argument_group("model")
    group.add_argument(
        "--model", required=True, help="HuggingFace hub id (owner/name) or a local checkpoint folder"
    )
    group.add_argument(
        "--revision", help="hub revision: a commit sha pins it (the manifest records the commit)"
    )
    group.add_argument(
        "--max-length", type=int, default=128, help="tokens per text, [CLS] and [SEP] included"
    )
    group.add_argument("--precision", default="fp32", help="OpenVINO IR weights: fp32, fp16 or int8 (NNCF)")
    group.add_argument(
        "--inference-precision",
        default="f32",
        help="what OVMS executes (its INFERENCE_PRECISION_HINT): f32, bf16, f16, or default (the CPU's "
        "own choice); the parity gate compiles the IR with it",
    )
    group.add_argument(
        "--activation", default="auto", help="auto (from the model config), sigmoid or softmax"
    )
    group.add_argument(
        "--triton-device", default="gpu", help="what Triton's config.pbtxt targets: gpu or cpu"
    )
    group.add_argument(
        "--text", default="auto", help="raw-text models: auto (when the tokenizer allows), on, off"
    )
    group.add_argument("--tensorrt", default="off", help="Triton GPU config: TensorRT off, FP32 or FP16")
    group.add_argument("--max-batch-size", type=int, default=32, help="Triton's max_batch_size")
    group.add_argument(
        "--sample-file", type=Path, help="parity sentences: CSV with a text column, or one per line"
    )
    group.add_argument(
        "--sample-size", type=int, default=DEFAULT_SAMPLE_SIZE, help="sentences used by the gate"
    )
    command.add_argument("--name", default="emotion", help="model name in the bucket and on the servers")


def _depth_option(command: argparse.ArgumentParser, *, default: str) -> None:
    from model_packager.audit import DEPTHS

    command.add_argument(
        "--depth",
        choices=DEPTHS,
        default=default,
        help="how a published version is checked: metadata (size and sha256 of every object, one HEAD "
        "each) or content (every object read back and hashed)",
    )


def _bucket_options(command: argparse.ArgumentParser, *, retry: bool = True) -> None:
    group = command.add_argument_group("bucket")
    add_s3_options(group)
    if retry:
        group.add_argument("--retry-budget", type=float, default=120.0, help="seconds to retry each S3 call")


if __name__ == "__main__":
    sys.exit(main())
