"""Faults at export and serving time: clear errors, nothing finished changed.

The exported signatures check their inputs in the graph: a client calling the
loaded SavedModel (or TF Serving) with a bad input gets an
``InvalidArgumentError`` whose message is one sentence naming the value.
"""

import hashlib
import os

import numpy as np
import pytest

from emobed_tf.export import main as export_main
from emobed_tf.serving import export

DIM = 6  # write_classification's audio feature size


def _hashes(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, cls_run, classic_run):
    """The shared emobed and classic runs (read-only) and an export of the emobed one."""
    root = tmp_path_factory.mktemp("serving")
    path = export.export_monomodal(cls_run.path, "audio", str(root / "sm"))
    return {"emobed": cls_run.path, "classic": classic_run.path, "export": path, "root": root}


@pytest.fixture(scope="module")
def signatures(runs):
    import tensorflow as tf

    loaded = tf.saved_model.load(runs["export"])
    return loaded, loaded.signatures


def _features(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _nan_at(item, frame):
    x = _features((2, 4, DIM))
    x[item, frame, 3] = np.nan
    return x


def _inf_at(item, frame):
    x = _features((2, 4, DIM))
    x[item, frame, 0] = -np.inf
    return x


BAD_INPUTS = {
    "feature size": (_features((2, 4, 5)), [4, 2], "features must have 6 values per frame, got 5"),
    "features rank 2": (_features((4, DIM)), [4],
                        "features must be a 3-d array [batch, time, 6], got 2 dimensions"),
    "features rank 4": (_features((1, 2, 4, DIM)), [4], "got 4 dimensions"),
    "lengths rank 2": (_features((2, 4, DIM)), [[4, 2]], "lengths must be a 1-d array [batch]"),
    "lengths scalar": (_features((2, 4, DIM)), 4, ("lengths must be a 1-d array [batch] (the "
                                                   "number of valid frames of each item), got 0 "
                                                   "dimensions")),
    "time axis 0": (_features((2, 0, DIM)), [1, 1], "features has a time axis of length 0"),
    "lengths batch": (_features((2, 4, DIM)), [4, 2, 1],
                      "lengths has 3 entries but features has 2 items"),
    "lengths zero": (_features((2, 4, DIM)), [4, 0], ("lengths must be at least 1 (every item "
                                                      "needs a valid frame), got lengths[1] = 0")),
    "lengths negative": (_features((2, 4, DIM)), [-3, 2], "got lengths[0] = -3"),
    "lengths too long": (_features((2, 4, DIM)), [4, 9],
                         "lengths[1] = 9 is longer than the time axis of features (4 frames)"),
    "NaN feature": (_nan_at(1, 2), [4, 3], "features[1] has a NaN or infinite value at frame 2"),
    "Inf feature": (_inf_at(0, 0), [4, 3], "features[0] has a NaN or infinite value at frame 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
@pytest.mark.parametrize("signature", ["serving_default", "embedding"])
def test_bad_serving_input_is_a_readable_invalid_argument(signatures, case, signature):
    import tensorflow as tf

    x, lengths, sentence = BAD_INPUTS[case]
    fn = signatures[1][signature]
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        fn(features=tf.constant(x), lengths=tf.constant(lengths, tf.int32))
    assert sentence in err.value.message, err.value.message[-600:]


def test_the_signature_leaves_shapes_to_the_checks(signatures):
    """Open shapes: every bad input reaches the checks (no bare placeholder mismatch)."""
    import tensorflow as tf

    spec = signatures[1]["serving_default"].structured_input_signature[1]
    assert spec["features"].shape.rank is None and spec["features"].dtype == tf.float32
    assert spec["lengths"].shape.rank is None and spec["lengths"].dtype == tf.int32


def test_padding_is_ignored_whatever_it_holds(signatures):
    """Masking equivalence: a padded item (padding NaN, Inf or noise) predicts as it does alone."""
    import tensorflow as tf

    sigs = signatures[1]
    x = _features((3, 5, DIM), seed=3)
    lengths = np.array([5, 2, 1], np.int32)
    padded = x.copy()
    padded[1, 2:] = np.nan
    padded[2, 1:] = np.inf
    batch = {k: v.numpy() for name in ("serving_default", "embedding") for k, v in sigs[name](
        features=tf.constant(padded), lengths=tf.constant(lengths)).items()}
    assert np.all(np.isfinite(batch["probabilities"])) and np.all(np.isfinite(batch["embedding"]))
    for i, n in enumerate(lengths):
        alone = {k: v.numpy() for name in ("serving_default", "embedding") for k, v in sigs[name](
            features=tf.constant(x[i:i + 1, :n]), lengths=tf.constant([n])).items()}
        np.testing.assert_allclose(batch["probabilities"][i], alone["probabilities"][0], atol=1e-5)
        np.testing.assert_allclose(batch["embedding"][i], alone["embedding"][0], atol=1e-5)
        assert batch["class_id"][i] == alone["class_id"][0]


def test_an_empty_batch_gives_empty_outputs(signatures):
    import tensorflow as tf

    out = signatures[1]["serving_default"](features=tf.zeros((0, 3, DIM)),
                                           lengths=tf.zeros((0,), tf.int32))
    assert out["probabilities"].shape[0] == 0 and out["class_id"].shape == (0,)


@pytest.mark.parametrize("value", ["-3", "0", "abc", "1.5", ""])
def test_version_must_be_a_positive_integer(runs, tmp_path, capsys, value):
    out = tmp_path / "sm"
    with pytest.raises(SystemExit) as exit_:
        export_main(["--run", runs["emobed"], "--target", "audio", "--out", str(out),
                "--version", value])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --version: versions are positive integers" in err and repr(value) in err
    assert not out.exists()  # nothing written, not even the model folder


@pytest.mark.parametrize("value", [0, -3, True, 2.5])
def test_version_check_in_python(runs, tmp_path, value):
    with pytest.raises(export.ExportError, match="versions are positive integers"):
        export.export_monomodal(runs["emobed"], "audio", str(tmp_path / "sm"), version=value)
    assert not (tmp_path / "sm").exists()


def test_an_existing_version_is_never_changed(runs, capsys):
    base = os.path.dirname(runs["export"])
    before = _hashes(base)
    assert export_main(["--run", runs["emobed"], "--target", "audio", "--out", base,
                   "--version", os.path.basename(runs["export"])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert runs["export"] in err and "never overwritten" in err
    assert _hashes(base) == before


def test_wrong_modality_is_refused_before_writing(runs, tmp_path, capsys):
    """A classic audio run has no video branch: exit 2, the run and the modality named."""
    out = tmp_path / "sm"
    before = _hashes(runs["classic"])
    assert export_main(["--run", runs["classic"], "--target", "video", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no video branch" in err and runs["classic"] in err
    assert not out.exists()
    assert _hashes(runs["classic"]) == before
    with pytest.raises(SystemExit) as exit_:  # not a modality at all
        export_main(["--run", runs["classic"], "--target", "text", "--out", str(out)])
    assert exit_.value.code == 2 and "'text'" in capsys.readouterr().err


def _copy_run(run, dest):
    import shutil

    shutil.copytree(run, dest)
    return str(dest)


def test_truncated_model_file_is_named(runs, tmp_path, capsys):
    run = _copy_run(runs["classic"], tmp_path / "run")
    path = os.path.join(run, "model.keras")
    with open(path, "rb") as fh:
        data = fh.read()
    with open(path, "wb") as fh:
        fh.write(data[: len(data) // 2])
    assert export_main(["--run", run, "--target", "audio", "--out", str(tmp_path / "sm")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path in err and "cannot load the model" in err
    assert not (tmp_path / "sm").exists()


def test_truncated_statistics_file_is_named(runs, tmp_path, capsys):
    run = _copy_run(runs["classic"], tmp_path / "run")
    path = os.path.join(run, "manifests", "audio.json")
    with open(path) as fh:
        text = fh.read()
    with open(path, "w") as fh:
        fh.write(text[: len(text) // 2])
    assert export_main(["--run", run, "--target", "audio", "--out", str(tmp_path / "sm")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and path in err and "truncated" in err
    assert not (tmp_path / "sm").exists()


def test_out_that_is_a_file(runs, tmp_path, capsys):
    out = tmp_path / "model"
    out.write_text("not a folder")
    assert export_main(["--run", runs["classic"], "--target", "audio", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err and "is a file" in err
    assert out.read_text() == "not a folder"


def test_a_killed_export_leaves_no_version_and_is_redone(runs, tmp_path):
    """A half-written version has a temporary name TF Serving never loads; a rerun replaces it."""
    base = tmp_path / "sm"
    stale = base / "1.tmp"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half")
    assert export.next_version(str(base)) == 1
    path = export.export_monomodal(runs["classic"], "audio", str(base))
    assert path == str(base / "1") and sorted(os.listdir(base)) == ["1"]
    assert os.path.getsize(os.path.join(path, "saved_model.pb")) > 100
