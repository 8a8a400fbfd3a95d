"""Build: a checkpoint in, a local tree in the bucket layout out, proven by the parity gate.

The tree is written to a sibling temporary folder and renamed into place only when every step,
the parity gate included, has passed: a failed build leaves nothing behind.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from emotion_contract.documents import OUTPUTS, SCHEMA, TEXT_INPUT, Ready, dump
from emotion_contract.errors import BadInput
from emotion_contract.layout import Layout
from emotion_contract.logs import Reporter
from emotion_contract.servers import Server
from model_packager import export, parity
from model_packager.manifest import LocalTree, fingerprint, library_versions, now, object_entries
from model_packager.options import BuildOptions, pointer_files
from model_packager.source import Source
from model_packager.tokenizer import UnsupportedTokenizer, char_table, check_supported

_ENSEMBLE_NOTE = "Triton needs a version folder for an ensemble; this file marks it.\n"


def build(
    *,
    source: Source,
    options: BuildOptions,
    output: Path,
    version: int,
    sentences: Sequence[str],
    reporter: Reporter,
) -> LocalTree:
    """Convert, prove, and write the tree for `version` to `output` (which must not exist yet)."""
    options.validate()
    options.check_fits(source)
    if version < 1:
        raise BadInput(f"version must be a positive integer, not {version}")
    if output.exists() and any(output.iterdir()):
        raise BadInput(f"{output} already exists and is not empty; builds go to a new folder")
    if not sentences:
        raise BadInput("the parity sample is empty")
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{output.name}.partial-", dir=output.parent))
    try:
        _build_into(
            partial, source=source, options=options, version=version, sentences=sentences, reporter=reporter
        )
        if output.exists():
            output.rmdir()
        partial.rename(output)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return LocalTree.open(output, options.name)


def _build_into(
    tree: Path,
    *,
    source: Source,
    options: BuildOptions,
    version: int,
    sentences: Sequence[str],
    reporter: Reporter,
) -> None:
    """The build as named steps: load, export ONNX, convert to IR, raw-text models, gate, documents."""
    layout = Layout(options.name)
    with reporter.step("load", model=source.id):
        loaded = export.load(source)
    _note_a_small_vocabulary(loaded, reporter)
    activation = export.resolve_activation(source.config, options.activation)
    text = _text_models(loaded, options.text, reporter)
    onnx = _export_onnx(tree, layout, version, loaded=loaded, activation=activation, reporter=reporter)
    calibration = [export.tokenize(loaded, [s], max_length=options.max_length) for s in sentences]
    with reporter.step("convert-ir", precision=options.precision):
        ir = export.convert_ir(
            onnx_path=onnx,
            xml=tree / layout.ir(layout.token_model, version),
            precision=options.precision,
            calibration=calibration,
        )
    text_ir = table = None
    if text:
        text_ir, table = _text_step(
            tree, layout, version, loaded=loaded, ir=ir, options=options, reporter=reporter
        )
    report = _gate(
        parity.Artifacts(onnx=onnx, ir=ir, text_ir=text_ir, char_table=table),
        loaded=loaded,
        options=options,
        activation=activation,
        sentences=sentences,
        reporter=reporter,
    )
    manifest = _manifest(
        layout, version, source=source, options=options, inputs=list(loaded.inputs), text=text,
        activation=activation, parity_report=report,
    )  # fmt: skip
    _write_documents(tree, layout, version, manifest)


def _export_onnx(
    tree: Path, layout: Layout, version: int, *, loaded: export.Loaded, activation: str, reporter: Reporter
) -> Path:
    """model.onnx, the python runner beside it, and the tokenizer clients need to build token requests."""
    onnx = tree / layout.onnx(version)
    with reporter.step("export-onnx") as done, reporter.quiet_stdout():
        export.export_onnx(loaded=loaded, activation=activation, path=onnx)
        done["bytes"] = onnx.stat().st_size
    _copy_model_file("onnx_model.py", tree / layout.onnx_runner(version))
    (tree / layout.tokenizer(version)).write_text(
        loaded.tokenizer.backend_tokenizer.to_str(), encoding="utf-8"
    )
    return onnx


def _text_step(
    tree: Path,
    layout: Layout,
    version: int,
    *,
    loaded: export.Loaded,
    ir: Path,
    options: BuildOptions,
    reporter: Reporter,
) -> tuple[Path, Path]:
    """The raw-text models: OVMS's fused IR, Triton's tokenizer step and ensemble folder."""
    with reporter.step("text-models"):
        text_ir = export.fuse_text_model(
            loaded=loaded,
            classifier_xml=ir,
            max_length=options.max_length,
            xml=tree / layout.ir(layout.text_model, version),
        )
        tokenizer_dir = tree / Layout.version_dir(Server.TRITON, layout.tokenizer_model, version)
        table = _write_tokenizer_step(tree / layout.tokenizer(version), tokenizer_dir)
        note = tree / layout.ensemble_note(version)
        note.parent.mkdir(parents=True)
        note.write_text(_ENSEMBLE_NOTE)
    return text_ir, table


def _gate(
    artifacts: parity.Artifacts,
    *,
    loaded: export.Loaded,
    options: BuildOptions,
    activation: str,
    sentences: Sequence[str],
    reporter: Reporter,
) -> dict[str, Any]:
    with reporter.step("parity", sentences=len(sentences)) as done:
        report = parity.check(
            loaded=loaded,
            artifacts=artifacts,
            sentences=sentences,
            activation=activation,
            precision=options.precision,
            inference_precision=options.inference_precision,
            max_length=options.max_length,
        )
        if "note" in report:
            reporter.info(report["note"])
        done["worst"] = {
            r["backend"]: r.get("max_abs_logit_diff", r["label_agreement"]) for r in report["results"]
        }
    return report


def _manifest(
    layout: Layout,
    version: int,
    *,
    source: Source,
    options: BuildOptions,
    inputs: list[str],
    text: bool,
    activation: str,
    parity_report: dict[str, Any],
) -> dict[str, Any]:
    """The manifest's document, without its objects (they are hashed once every file is written)."""
    source_info = source.describe()
    libraries = library_versions()
    outputs = list(OUTPUTS)
    return {
        "schema": SCHEMA,
        "name": options.name,
        "version": version,
        "fingerprint": fingerprint(source=source_info, options=options.as_dict(), libraries=libraries),
        "created": now(),
        "source": source_info,
        "labels": source.labels,
        "activation": activation,
        "options": options.as_dict(),
        "models": {
            "token": {"name": layout.token_model, "inputs": inputs, "outputs": outputs},
            "text": {"name": layout.text_model, "inputs": [TEXT_INPUT], "outputs": outputs} if text else None,
            "tokenizer": {"key": layout.tokenizer(version)},
        },
        "libraries": libraries,
        "parity": parity_report,
    }


def _write_documents(tree: Path, layout: Layout, version: int, manifest: dict[str, Any]) -> None:
    """Triton's pointers, then the manifest over every file, then READY."""
    for key, content in pointer_files(manifest=manifest, version=version).items():
        (tree / key).parent.mkdir(parents=True, exist_ok=True)
        (tree / key).write_bytes(content)
    manifest["objects"] = object_entries(tree)
    manifest_bytes = dump(manifest)
    (tree / layout.manifest(version)).parent.mkdir(parents=True, exist_ok=True)
    (tree / layout.manifest(version)).write_bytes(manifest_bytes)
    (tree / layout.ready).write_bytes(Ready.of(layout, version, manifest_bytes).dump())


def _note_a_small_vocabulary(loaded: export.Loaded, reporter: Reporter) -> None:
    """Embeddings padded past the vocabulary are common (to a multiple of 64, say), so a smaller
    tokenizer is not wrong by itself; one that covers less than half of them may be another model's."""
    tokens, embeddings = len(loaded.tokenizer), loaded.model.config.vocab_size
    if tokens * 2 < embeddings:
        reporter.info(
            f"the tokenizer has {tokens} tokens for the model's {embeddings} embeddings: "
            "check that it is this model's own tokenizer",
            tokens=tokens,
            embeddings=embeddings,
        )


def _text_models(loaded: export.Loaded, mode: str, reporter: Reporter) -> bool:
    if mode == "off":
        return False
    try:
        check_supported(json.loads(loaded.tokenizer.backend_tokenizer.to_str()))
    except (UnsupportedTokenizer, AttributeError) as err:
        if mode == "on":
            raise BadInput(
                f"cannot build the raw-text models: the tokenizer is not BERT WordPiece ({err})"
            ) from err
        reporter.info("raw-text models skipped: the tokenizer is not BERT WordPiece", reason=str(err))
        return False
    return True


def _write_tokenizer_step(tokenizer_json: Path, folder: Path) -> Path:
    folder.mkdir(parents=True)
    table = folder / "char_table.json"
    table.write_text(json.dumps(char_table(tokenizer_json), ensure_ascii=False), encoding="utf-8")
    _copy_model_file("wordpiece.py", folder / "wordpiece.py")
    _copy_model_file("tokenizer_model.py", folder / "model.py")
    return table


def _copy_model_file(name: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(resources.files("model_packager.triton_models").joinpath(name).read_bytes())
