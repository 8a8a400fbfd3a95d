"""OVMS as the chart renders it, checked against its documented flags and keys, its model compiled.

No OVMS build runs here. What can be proven without it: the arguments are flags OVMS knows and
accepts together, config.json uses only documented keys, the S3 environment has the names OVMS
reads, and the IR at each base_path compiles and answers under the rendered plugin_config with the
OpenVINO runtime (the runtime OVMS embeds). Sources (openvinotoolkit/model_server): docs/parameters.md,
docs/starting_server.md, docs/using_cloud_storage.md, docs/metrics.md, src/config.cpp; summarised in
shared/REFERENCE.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

#: Server flags (docs/parameters.md): the ones that go with --config_path.
SERVER_FLAGS = {
    "--config_path", "--port", "--rest_port", "--grpc_workers", "--rest_workers", "--grpc_bind_address",
    "--rest_bind_address", "--file_system_poll_wait_seconds", "--sequence_cleaner_poll_wait_minutes",
    "--custom_node_resources_cleaner_interval_seconds", "--log_level", "--log_path", "--cache_dir",
    "--metrics_enable", "--metrics_list", "--cpu_extension", "--grpc_channel_arguments", "--grpc_max_threads",
    "--grpc_memory_quota", "--allowed_local_media_path",
}  # fmt: skip
#: Per-model flags: OVMS refuses them together with --config_path (src/config.cpp).
MODEL_FLAGS = {
    "--model_name", "--model_path", "--nireq", "--plugin_config", "--target_device", "--shape",
    "--batch_size", "--model_version_policy", "--layout",
}  # fmt: skip
MODEL_KEYS = {"name", "base_path", "target_device", "nireq", "plugin_config", "model_version_policy", "shape",
              "batch_size", "layout"}  # fmt: skip
TOP_KEYS = {"model_config_list", "monitoring", "pipeline_config_list", "custom_loader_config_list",
            "mediapipe_config_list"}  # fmt: skip
VERSION_POLICIES = {"latest", "specific", "all"}
S3_ENV = ("S3_ENDPOINT", "AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
_BUCKET = re.compile(r"^[0-9a-z.-]+$")


def flags(argv: Sequence[str]) -> dict[str, str]:
    """--name=value (or --name value) pairs of an argv after the binary."""
    found: dict[str, str] = {}
    items = list(argv[1:])
    while items:
        item = items.pop(0)
        if not item.startswith("--"):
            raise ValueError(f"unexpected argument {item!r}")
        name, _, value = item.partition("=")
        if not _ and items and not items[0].startswith("--"):
            value = items.pop(0)
        found[name] = value
    return found


def check(*, argv: Sequence[str], config: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Everything OVMS would refuse or misread in this command line, config.json and environment."""
    problems: list[str] = []
    try:
        given = flags(argv)
    except ValueError as err:
        return [f"ovms arguments: {err}"]
    problems += [f"ovms does not know the flag {f}" for f in sorted(set(given) - SERVER_FLAGS - MODEL_FLAGS)]
    if "--config_path" not in given:
        problems.append("ovms needs --config_path (the chart's config.json)")
    problems += [f"ovms refuses {f} together with --config_path" for f in sorted(set(given) & MODEL_FLAGS)]
    problems += [f"config.json: unknown top-level key {k}" for k in sorted(set(config) - TOP_KEYS)]
    metrics = config.get("monitoring", {}).get("metrics", {})
    if metrics.get("enable") and "--metrics_enable" in given:
        problems.append("metrics are enabled both in config.json and with --metrics_enable: a config error")
    if not metrics.get("enable") and given.get("--metrics_enable") not in ("true", ""):
        problems.append("metrics are off: /metrics on the REST port answers nothing to scrape")
    for entry in config.get("model_config_list", []):
        model = entry.get("config", {})
        name = model.get("name", "?")
        problems += [f"config.json model {name}: unknown key {k}" for k in sorted(set(model) - MODEL_KEYS)]
        plugin = model.get("plugin_config", {})
        if "PERFORMANCE_HINT" in plugin and "NUM_STREAMS" in plugin:
            problems.append(f"config.json model {name}: PERFORMANCE_HINT and NUM_STREAMS together")
        policy = model.get("model_version_policy", {"latest": {}})
        if len(policy) != 1 or next(iter(policy)) not in VERSION_POLICIES:
            problems.append(
                f"config.json model {name}: model_version_policy {policy} is not latest, specific or all"
            )
        base = urlparse(model.get("base_path", ""))
        if base.scheme == "s3" and not _BUCKET.match(base.netloc):
            problems.append(f"config.json model {name}: bucket {base.netloc!r} is not [0-9a-z.-]+")
    if any(
        urlparse(e.get("config", {}).get("base_path", "")).scheme == "s3"
        for e in config.get("model_config_list", [])
    ):
        problems += [
            f"ovms reads S3 settings from {n}, which the ovms container does not set"
            for n in S3_ENV
            if n not in env
        ]
        if "AWS_DEFAULT_REGION" in env and "AWS_REGION" not in env:
            problems.append("ovms reads AWS_REGION, not AWS_DEFAULT_REGION")
    return problems


def served_version(folder: Path, policy: Mapping[str, Any]) -> int | None:
    """The version OVMS serves from a local base_path under its model_version_policy (the newest of
    `latest`, the listed ones of `specific`): numeric folders holding both files of an IR (docs)."""
    versions = sorted(
        int(p.name)
        for p in (folder.iterdir() if folder.is_dir() else [])
        if p.name.isdigit() and any(p.glob("*.xml")) and any(p.glob("*.bin"))
    )
    if "specific" in policy:
        versions = [v for v in versions if v in policy["specific"].get("versions", [])]
    return versions[-1] if versions else None


def compile_model(xml: Path, plugin_config: Mapping[str, Any]) -> Any:
    """The IR compiled for CPU as OVMS does with this plugin_config (values passed as strings).

    OVMS ships the openvino-tokenizers extension, which the text model's string operations need;
    importing the package registers it with the runtime here.
    """
    import openvino as ov
    import openvino_tokenizers  # noqa: F401

    return ov.Core().compile_model(str(xml), "CPU", {k: str(v) for k, v in plugin_config.items()})


def read_config(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())
