"""The packager Job's name hashes every part of its spec that Kubernetes refuses to change.

Kubernetes' Job validation (`ValidateJobSpecUpdate`, pkg/apis/batch/validation) keeps `template`,
`selector`, `completions`, `completionMode`, `podFailurePolicy`, `backoffLimitPerIndex`, `managedBy` and
`successPolicy` immutable: a chart change to any of them must be a new Job (a new name), or the upgrade
fails while the old Job exists. The mutable fields (backoffLimit, activeDeadlineSeconds,
ttlSecondsAfterFinished) must not start a new Job.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from devstack.chart import CHART, Render

PERMANENT = '{{- define "emotion-serving.packager.permanentExitCodes" -}}\n[3, 4, 5, 8]\n'


def job_name(*, chart: Path = CHART, set_values: tuple[str, ...] = ()) -> str:
    render = Render.template(release="es", namespace="emotion", set_values=set_values, chart=chart)
    return str(render.one("Job", "packager")["metadata"]["name"])


def test_a_changed_pod_failure_policy_is_a_new_job(tmp_path: Path) -> None:
    chart = tmp_path / "emotion-serving"
    shutil.copytree(CHART, chart)
    helpers = chart / "templates" / "_packager.tpl"
    text = helpers.read_text()
    assert PERMANENT in text, "the permanent exit codes moved: update this test"
    helpers.write_text(text.replace(PERMANENT, PERMANENT.replace("[3, 4, 5, 8]", "[3, 4, 5, 8, 9]")))
    changed = Render.template(release="es", namespace="emotion", chart=chart).one("Job", "packager")
    rule = changed["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["onExitCodes"]["values"] == [3, 4, 5, 8, 9]
    assert (
        changed["spec"]["template"]
        == Render.template(release="es", namespace="emotion").one("Job", "packager")["spec"]["template"]
    ), "only the policy should differ"
    assert changed["metadata"]["name"] != job_name()


def test_mutable_fields_keep_the_job() -> None:
    assert (
        job_name(
            set_values=(
                "packager.ttlSecondsAfterFinished=60",
                "packager.activeDeadlineSeconds=600",
                "packager.backoffLimit=1",
            )
        )
        == job_name()
    )
