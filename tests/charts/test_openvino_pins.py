"""One OpenVINO: the packager writes its IR and tokenizer extension with the OpenVINO that OVMS runs.

An IR is read by the runtime that wrote it and by newer ones, not by older ones (REFERENCE.md), and
the fused-tokenizer model needs the same openvino-tokenizers extension as the server. The chart's OVMS
image tag is the fact; the packager's pins (runtime.in, constraints.txt, which Dockerfile.packager
installs from) must follow it.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OVMS_VALUES = ROOT / "charts/emotion-serving/charts/ovms/values.yaml"
REQUIREMENTS = ROOT / "requirements"

#: The OpenVINO each OVMS release embeds (its versions.mk, openvinotoolkit/model_server).
OVMS_OPENVINO = {"2026.3": "2026.3.0"}


def pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\[\],-]+)==(\S+)$", path.read_text(), re.MULTILINE))


def ovms_release() -> str:
    tag = yaml.safe_load(OVMS_VALUES.read_text())["image"]["tag"]
    return tag.removesuffix("-gpu")


def test_the_ovms_image_release_has_a_known_openvino() -> None:
    release = ovms_release()
    assert release in OVMS_OPENVINO, (
        f"OVMS {release}: add the OpenVINO it embeds (its versions.mk) to OVMS_OPENVINO, then pin that"
    )


def test_the_packager_pins_the_openvino_of_the_ovms_image() -> None:
    openvino = OVMS_OPENVINO[ovms_release()]
    for file in ("runtime.in", "constraints.txt"):
        found = pins(REQUIREMENTS / file)
        assert found.get("openvino") == openvino, (
            f"{file}: openvino=={found.get('openvino')}, OVMS runs {openvino}"
        )
        assert found.get("openvino-tokenizers") == f"{openvino}.0", f"{file}: openvino-tokenizers drifted"


def test_the_packager_image_takes_openvino_from_the_pins_only() -> None:
    dockerfile = (ROOT / "Dockerfile.packager").read_text()
    assert "-c requirements/constraints.txt" in dockerfile
    assert not re.search(r"openvino\S*==", dockerfile), "Dockerfile.packager pins OpenVINO on its own"
