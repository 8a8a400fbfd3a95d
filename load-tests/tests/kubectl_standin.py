"""A stand-in for the two kubectl commands `loadtest release` runs, for a machine without a cluster.

    get services|deployments -n NS -l SELECTOR -o json
        the Services (Deployments) of the real chart, rendered by the real helm (STANDIN_HELM,
        STANDIN_CHART, plus STANDIN_SET values), filtered by the label selector, as kubectl prints a List
    port-forward -n NS --address 127.0.0.1 svc/NAME :PORT...
        kubectl's `Forwarding from 127.0.0.1:LOCAL -> PORT` lines, where LOCAL comes from STANDIN_PORTS
        (`PORT=LOCAL,...`: the ports of the local Triton), then waits to be stopped like kubectl does

Every invocation is appended to STANDIN_LOG (argv and pid) so the test can check what was asked and that
the port-forwards were stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml


def main(argv: list[str]) -> int:
    with open(os.environ["STANDIN_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps({"pid": os.getpid(), "argv": argv}) + "\n")
    kinds = {"services": "Service", "deployments": "Deployment"}
    if argv[0] == "get" and argv[1] in kinds:
        selector = dict(pair.split("=", 1) for pair in argv[argv.index("-l") + 1].split(","))
        helm = [os.environ["STANDIN_HELM"], "template", selector["app.kubernetes.io/instance"]]
        helm += [os.environ["STANDIN_CHART"], "--namespace", argv[argv.index("-n") + 1]]
        for value in filter(None, os.environ.get("STANDIN_SET", "").split(",")):
            helm += ["--set", value]
        rendered = subprocess.run(helm, capture_output=True, text=True, check=True).stdout
        objects = [
            doc
            for doc in yaml.safe_load_all(rendered)
            if doc and doc["kind"] == kinds[argv[1]]
            and all(doc["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ]  # fmt: skip
        print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
        return 0
    if argv[0] == "port-forward":
        local = dict(pair.split("=") for pair in os.environ["STANDIN_PORTS"].split(","))
        for remote in (a[1:] for a in argv if a.startswith(":")):
            print(f"Forwarding from 127.0.0.1:{local[remote]} -> {remote}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while True:
            time.sleep(1)
    print(f"kubectl stand-in: unsupported command {argv}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
