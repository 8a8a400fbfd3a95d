"""`loadtest smoke`: a handful of labelled sentences to every target's token and text models (the chart's
`helm test`). Each answer must have the contract's shape (one probability per manifest label, and for the
token model logits whose activation gives those probabilities), match the reference computed offline with
the package's ONNX model, and every target must agree with every other within the tolerance.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from emotion_contract.errors import Unavailable
from loadtest.corpus import load_corpus
from loadtest.errors import SmokeFailed
from loadtest.package import PackageRef
from loadtest.prepare import OUTPUT, Prepared, prepare_inputs, requests_for
from loadtest.targets import Target, check_ready, parse_targets

INPUT_KINDS = ("tokens", "text")


def run_smoke(
    *,
    targets: list[str],
    protocol: str,
    package: PackageRef,
    inputs: tuple[str, ...] | None,
    corpus: Path | None,
    sentences: int,
    tolerance: float,
    timeout: float,
) -> list[str]:
    """Lines to print on success; SmokeFailed (one line, the first problem and how many more) otherwise."""
    parsed = parse_targets(targets, [], protocol=protocol)
    sample = load_corpus(corpus).sample(sentences)
    opened = package.open()
    if inputs is None:
        inputs = INPUT_KINDS if opened.has_text_model else ("tokens",)
    elif "text" in inputs:
        opened.require_text_model()
    damaged = opened.problems()
    if damaged:
        raise SmokeFailed(f"smoke: package {opened.store.location} v{opened.version}: {_first(damaged)}")
    prepared = prepare_inputs(package=opened, corpus=sample, cache_dir=None)
    problems: list[str] = []
    answers: dict[tuple[str, str], np.ndarray] = {}
    lines = []
    for target in parsed:
        for kind in inputs:
            model = opened.served_name(text=kind == "text")
            check_ready(target, protocol=protocol, model=model, timeout=timeout)
            probabilities, found = _ask(
                target,
                protocol,
                model,
                prepared,
                text=kind == "text",
                timeout=timeout,
                activation=opened.activation,
                tolerance=tolerance,
            )
            problems += found
            if probabilities is not None:
                answers[(target.name, kind)] = probabilities
                agree = _corpus_agreement(probabilities, prepared)
                drift = float(np.abs(probabilities - prepared.reference).max())
                lines.append(
                    f"{target.name} {model} ({protocol}): {len(prepared)} sentences, max drift from the "
                    f"reference {drift:.2g}; top label equals the corpus label for {agree}"
                )
    problems += _disagreements(answers, [t.name for t in parsed], inputs, tolerance)
    if problems:
        raise SmokeFailed(f"smoke: {_first(problems)}")
    lines.append(
        f"smoke: ok: {len(parsed)} target(s) x {', '.join(inputs)} x {len(prepared)} sentences agree with "
        f"the reference and with each other within {tolerance:g}"
    )
    return lines


def _first(problems: list[str]) -> str:
    return problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")


def _disagreements(
    answers: dict[tuple[str, str], np.ndarray], targets: list[str], inputs: tuple[str, ...], tolerance: float
) -> list[str]:
    """Pairs of targets whose probabilities for the same model differ beyond the tolerance."""
    found = []
    for kind in inputs:
        for (a, pa), (b, pb) in itertools.combinations(((t, answers.get((t, kind))) for t in targets), 2):
            if pa is not None and pb is not None and (delta := float(np.abs(pa - pb).max())) > tolerance:
                found.append(
                    f"{a} and {b} disagree on the {kind} model: max |Δprob| {delta:.3g} > {tolerance:g}"
                )
    return found


def _ask(
    target: Target,
    protocol: str,
    model: str,
    prepared: Prepared,
    *,
    text: bool,
    timeout: float,
    activation: str,
    tolerance: float,
) -> tuple[np.ndarray | None, list[str]]:
    """One request per sentence through tritonclient's standard client; the probabilities and any problems."""
    if protocol == "grpc":
        import tritonclient.grpc as client_module
    else:
        import tritonclient.http as client_module
    from tritonclient.utils import InferenceServerException

    where = f"{target.name} {model}"
    labels = len(prepared.label_names)
    options: dict[str, Any] = (
        {} if protocol == "grpc" else {"network_timeout": timeout, "connection_timeout": timeout}
    )
    client = client_module.InferenceServerClient(target.url, **options)
    call: dict[str, Any] = {"client_timeout": timeout} if protocol == "grpc" else {}
    outputs = [OUTPUT] if text else ["logits", OUTPUT]
    rows, problems = [], []
    try:
        for request in requests_for(prepared, batch_size=1, text=text):
            sentence = request.sentences[0]
            tensors, wanted = _tensors(client_module, request.inputs, outputs)
            try:
                result = client.infer(model, tensors, outputs=wanted, **call)
            except InferenceServerException as err:
                message = (err.message() or str(err)).splitlines()[0]
                if "unavailable" in message.lower() or "connect" in message.lower():
                    raise Unavailable(f"smoke: {where}: {message}") from None
                problems.append(f"{where}: sentence {sentence}: the server answered an error: {message}")
                continue
            probabilities = result.as_numpy(OUTPUT)
            if probabilities is None or probabilities.shape != (1, labels):
                shape = None if probabilities is None else probabilities.shape
                problems.append(f"{where}: {OUTPUT} has shape {shape}, the contract says (1, {labels})")
                continue
            problems += _check(
                where,
                result,
                sentence=sentence,
                probabilities=probabilities,
                reference=request.reference,
                prepared=prepared,
                activation=activation,
                tolerance=tolerance,
                text=text,
            )
            rows.append(probabilities[0])
    finally:
        client.close()
    if len(rows) != len(prepared):
        return None, problems
    return np.stack(rows), problems


def _tensors(
    client_module: Any, inputs: dict[str, np.ndarray], outputs: list[str]
) -> tuple[list[Any], list[Any]]:
    """tritonclient's input tensors for one request, and the outputs it asks for."""
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for input_name, array in inputs.items():
        tensor = client_module.InferInput(input_name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors, [client_module.InferRequestedOutput(o) for o in outputs]


def _check(
    where: str,
    result: Any,
    *,
    sentence: int,
    probabilities: np.ndarray,
    reference: np.ndarray,
    prepared: Prepared,
    activation: str,
    tolerance: float,
    text: bool,
) -> list[str]:
    problems = []
    labels = prepared.label_names
    got, expected = int(probabilities[0].argmax()), int(reference[0].argmax())
    drift = float(np.abs(probabilities - reference).max())
    if got != expected or drift > tolerance:
        problems.append(
            f"{where}: sentence {sentence} («{prepared.texts[sentence][:60]}»): top label {labels[got]}, "
            f"reference {labels[expected]}, max drift {drift:.3g} (tolerance {tolerance:g})"
        )
    if not text:
        logits = result.as_numpy("logits")
        if logits is None or logits.shape != probabilities.shape:
            problems.append(f"{where}: logits missing or not of shape {probabilities.shape}")
        elif activation in {"sigmoid", "softmax"}:
            if activation == "sigmoid":
                expected_probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
            else:
                shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
                expected_probabilities = shifted / shifted.sum(axis=1, keepdims=True)
            if float(np.abs(expected_probabilities - probabilities).max()) > tolerance:
                problems.append(f"{where}: sentence {sentence}: probabilities are not {activation}(logits)")
    return problems


def _corpus_agreement(probabilities: np.ndarray, prepared: Prepared) -> str:
    labelled = [(i, label) for i, label in enumerate(prepared.corpus_labels) if label]
    if not labelled:
        return "no labelled sentence"
    same = sum(prepared.label_names[int(probabilities[i].argmax())] == label for i, label in labelled)
    return f"{same}/{len(labelled)} (informational)"
