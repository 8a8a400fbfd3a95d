"""Inputs without a server: the default corpus, user corpora, the packaged model (folder and S3), the
offline reference and the cache of prepared inputs."""

from __future__ import annotations

import collections
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from emotion_contract.errors import BadInput, CredentialsRefused
from loadtest.corpus import load_corpus
from loadtest.package import PackageRef
from loadtest.prepare import prepare_inputs, requests_for


def test_default_corpus_is_russian_covers_six_labels_and_realistic_lengths(test_models) -> None:
    corpus = load_corpus()
    assert len(corpus.texts) >= 200
    assert len(set(corpus.texts)) == len(corpus.texts)
    counts = collections.Counter(corpus.labels)
    assert set(counts) == set(test_models.labels)
    assert min(counts.values()) >= 30
    assert all(20 <= len(text) <= 220 for text in corpus.texts)
    assert all(any("а" <= ch.lower() <= "я" or ch in "ёЁ" for ch in text) for text in corpus.texts)
    # Any prefix covers every label: `smoke` takes the first sentences.
    assert set(corpus.sample(6).labels) == set(test_models.labels)


def test_user_corpus_csv_and_text(tmp_path: Path) -> None:
    csv_file = tmp_path / "mine.csv"
    csv_file.write_text('id,text\n1,"Первое, с запятой"\n2,\n3,Второе\n', encoding="utf-8")
    corpus = load_corpus(csv_file)
    assert corpus.texts == ("Первое, с запятой", "Второе")
    assert corpus.labels == ("", "")

    text_file = tmp_path / "mine.txt"
    text_file.write_text("  одно  \n\nдва\n", encoding="utf-8")
    assert load_corpus(text_file).texts == ("одно", "два")


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "no-text.csv",
            b"sentence,label\n1,2\n",
            "a CSV corpus needs a `text` column (found: ['sentence', 'label'])",
        ),
        ("empty.txt", b"\n \n", "no sentences"),
        ("latin1.txt", "привет".encode("cp1251"), "not UTF-8 text (invalid continuation byte at byte 0)"),
    ],
)
def test_bad_corpus_is_named_in_one_line(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(BadInput) as err:
        load_corpus(path)
    assert err.value.message == f"corpus {path}: {message}"


def test_reference_is_onnx_runtime_on_the_packaged_model(tiny_package: Path, tmp_path: Path) -> None:
    package = PackageRef(source=str(tiny_package), name="emotion").open()
    corpus = load_corpus().sample(20)
    prepared = prepare_inputs(package=package, corpus=corpus, cache_dir=tmp_path)
    assert prepared.reference.shape == (20, len(package.labels))

    session = ort.InferenceSession(str(tiny_package / "triton/emotion/1/model.onnx"))
    for index in (0, 7, 19):
        ids, types = prepared.sentence(index)
        feed = {
            "input_ids": ids[None],
            "attention_mask": np.ones_like(ids)[None],
            "token_type_ids": types[None],
        }
        (expected,) = session.run(["probabilities"], feed)
        np.testing.assert_array_equal(prepared.reference[index], expected[0])
        assert len(ids) <= package.max_length

    # Padding inside a batch request changes nothing beyond float noise.
    request = requests_for(prepared, batch_size=4, text=False)[3]
    (batched,) = session.run(["probabilities"], request.inputs)
    np.testing.assert_allclose(batched, request.reference, atol=1e-6)
    assert request.sentences == (12, 13, 14, 15)
    assert sorted(request.inputs) == ["attention_mask", "input_ids", "token_type_ids"]


def test_prepared_inputs_are_cached_per_package_and_corpus(tiny_package: Path, tmp_path: Path) -> None:
    package_dir = tmp_path / "package"
    shutil.copytree(tiny_package, package_dir)
    package = PackageRef(source=str(package_dir), name="emotion").open()
    first = prepare_inputs(package=package, corpus=load_corpus(), cache_dir=tmp_path / "cache")
    # The cache answers without the tokenizer or the ONNX file.
    (package_dir / "triton/emotion/1/model.onnx").unlink()
    second = prepare_inputs(package=package, corpus=load_corpus(), cache_dir=tmp_path / "cache")
    assert second.path == first.path
    np.testing.assert_array_equal(second.reference, first.reference)
    # Another corpus is another entry, and needs the model again.
    with pytest.raises(BadInput, match=r"triton/emotion/1/model.onnx is missing"):
        prepare_inputs(package=package, corpus=load_corpus().sample(5), cache_dir=tmp_path / "cache")


def test_package_checks_ready_and_object_checksums(tiny_package: Path, tmp_path: Path) -> None:
    package_dir = tmp_path / "package"
    shutil.copytree(tiny_package, package_dir)
    ready = json.loads((package_dir / "manifests/emotion/READY").read_text())

    (package_dir / "triton/emotion/1/model.onnx").write_bytes(b"not the published model")
    package = PackageRef(source=str(package_dir), name="emotion").open()
    with pytest.raises(BadInput) as err:
        prepare_inputs(package=package, corpus=load_corpus(), cache_dir=None)
    assert err.value.message == (
        f"package {package_dir}: triton/emotion/1/model.onnx does not match the sha256 in its manifest"
    )

    manifest = package_dir / ready["manifest"]
    manifest.write_text(manifest.read_text().replace('"sigmoid"', '"softmax"'))
    with pytest.raises(BadInput) as err:
        PackageRef(source=str(package_dir), name="emotion").open()
    ready_key = "manifests/emotion/READY"
    assert (
        err.value.message
        == f"package {package_dir}: {ready['manifest']} does not match the sha256 in {ready_key}"
    )
    with pytest.raises(BadInput) as err:
        PackageRef(source=str(package_dir), name="other").open()
    assert err.value.message == f"package {package_dir}: manifests/other/READY is missing"


def test_package_from_s3_matches_the_folder(
    tiny_package: Path, tmp_path: Path, s3_server, bucket_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = s3_server.client()
    client.make_bucket(bucket_name)
    for path in sorted(p for p in tiny_package.rglob("*") if p.is_file()):
        client.fput_object(bucket_name, f"published/{path.relative_to(tiny_package).as_posix()}", str(path))
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)

    corpus = load_corpus().sample(10)
    remote = PackageRef(
        source=f"s3://{bucket_name}/published", name="emotion", s3_endpoint=s3_server.endpoint
    ).open()
    local = PackageRef(source=str(tiny_package), name="emotion").open()
    assert remote.manifest == local.manifest
    from_s3 = prepare_inputs(package=remote, corpus=corpus, cache_dir=None)
    from_folder = prepare_inputs(package=local, corpus=corpus, cache_dir=None)
    np.testing.assert_array_equal(from_s3.reference, from_folder.reference)
    np.testing.assert_array_equal(from_s3.ids, from_folder.ids)

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")  # refused keys: exit 5 here as in the packager
    with pytest.raises(CredentialsRefused) as err:
        PackageRef(
            source=f"s3://{bucket_name}/published", name="emotion", s3_endpoint=s3_server.endpoint
        ).open()
    where = f"package s3://{bucket_name}/published on {s3_server.endpoint}"
    assert err.value.message == (
        f"{where}: {s3_server.endpoint} refused the credentials (SignatureDoesNotMatch) "
        "while trying to read published/manifests/emotion/READY"
    )
