"""Fault cases of issue 21 on runs and speaker folds: a run never deletes a data set
(case 1), no held-out speaker leaks through another spelling of its id (2), a finished
run is reused only with the settings it was trained with (3), and crossval checks its
folds, seeds and corpora before anything trains (11, 12, 14, 17)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from emobed_tf import configs
from emobed_tf import crossval
from emobed_tf.data import pipeline
from emobed_tf.data.speakers import auxiliary_exclusions
from emobed_tf.experiments import experiment
from emobed_tf import train
from emobed_tf.experiments.rundir import RunError
from emobed_tf.records.schema import DataError, Item
from emobed_tf.records.writer import DatasetWriter
from tests.conftest import CLASSES, tree_hashes


def _corpus(path, name, modality, speakers, per_speaker=3, dim=4, labels=CLASSES, seed=0):
    """A one-modality corpus named ``name``, ``per_speaker`` items of each speaker id
    (all written as training items: speaker folds assign the partitions)."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(str(path), name, "classification", labels, {modality: dim}) as w:
        for spk in speakers:
            for i in range(per_speaker):
                c = i % len(labels)
                w.add(Item(modality, (rng.normal(size=(1, dim)) + 2 * c).astype(np.float32),
                           c, corpus=name, speaker=spk, recording=f"{modality}-{spk}-{i}"))
    return str(path)


def _exit(main, argv, capsys):
    code = main(argv)
    return code, capsys.readouterr().err


def _train_argv(data, out, *extra):
    return ["--dataset", "custom", "--data-dir", data, "--out", out, "--epochs", "1",
            "--batch-size", "4", "--encoder-units", "4", "--shared-units", "4", "--verbose", "0",
            "--mode", "classic", "--test-speakers", "s3", "--dev-speakers", "s2", *extra]


# -- case 1: a run folder and a data folder are apart -----------------------------------


@pytest.mark.parametrize("where", ["same", "inside", "holds"])
def test_a_run_folder_is_never_a_data_folder(tmp_path, capsys, where):
    data = tmp_path / "d"
    _corpus(data, "toy", "audio", ["s0", "s1", "s2", "s3"])
    out = {"same": data, "inside": data / "run", "holds": tmp_path}[where]
    before = tree_hashes(data)
    for extra in ((), ("--overwrite",)):
        code, err = _exit(train.main, _train_argv(str(data), str(out), *extra), capsys)
        assert code == 2
        assert f"--out {out} " in err and "data folder" in err and len(err.splitlines()) == 1
        assert {"same": " is the audio", "inside": "lies inside the audio",
                "holds": "holds the audio"}[where] in err
    assert tree_hashes(data) == before  # manifest, shards, work files: all kept


def test_overwrite_replaces_only_a_run_folder(tmp_path, capsys):
    data = _corpus(tmp_path / "d", "toy", "audio", ["s0", "s1", "s2", "s3"])
    other = tmp_path / "photos"
    other.mkdir()
    (other / "keep.txt").write_text("not a run")
    code, err = _exit(train.main, _train_argv(data, str(other), "--overwrite"), capsys)
    assert code == 2 and "replaces only a run folder" in err
    assert (other / "keep.txt").read_text() == "not a run"
    run = str(tmp_path / "run")
    assert train.main(_train_argv(data, run)) == 0
    assert train.main(_train_argv(data, run, "--overwrite")) == 0  # a run is replaced
    assert os.path.isfile(os.path.join(run, "metrics.json"))


# -- case 2: speaker ids spelled differently --------------------------------------------


def _two_corpora(tmp_path, aux_speakers, aux_name="ravdess"):
    audio = _corpus(tmp_path / "a", "ravdess", "audio", ["01", "02", "03", "04"])
    video = _corpus(tmp_path / "v", aux_name, "video", aux_speakers, per_speaker=2, dim=3,
                    seed=1)
    return audio, video


def _fold_cfg(audio, video, shared="auto", test=("01",), dev=("02",)):
    cfg = configs.default_config("custom", "unused", "audio", "emobed", audio_dir=audio,
                           video_dir=video)
    return dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, test_speakers=tuple(test), dev_speakers=tuple(dev), shared_speakers=shared))


def test_speaker_ids_are_matched_as_numbers_and_held_out_faces_stay_out(tmp_path):
    audio, video = _two_corpora(tmp_path, ["1", "2", "3", "4"])
    sources = experiment.resolve_sources(_fold_cfg(audio, video))
    assert sources["video"].speakers == {"train": ("3", "4")}  # 1 and 2 are 01 and 02
    ds = pipeline.make_modality_dataset(sources["video"], "video", "train", 16, with_ids=True)
    assert sorted(s.decode() for b in ds for s in b["speaker"].numpy()) == \
        ["3", "3", "4", "4"]
    assert auxiliary_exclusions(_fold_cfg(audio, video), experiment.resolve_sources(
        _fold_cfg(audio, video, test=(), dev=()))) == {"video": 4}
    # the user may spell the target's speakers either way too
    assert experiment.resolve_sources(_fold_cfg(audio, video, test=("1",), dev=("2",)))[
        "audio"].speakers["test"] == ("01",)


def test_shared_corpora_must_hold_every_held_out_speaker(tmp_path):
    audio, video = _two_corpora(tmp_path, ["A1", "A2", "A3", "A4"])
    with pytest.raises(DataError, match=r"held-out audio speakers \['01', '02'\] have no video "
                                        r"items here, though the corpora share speakers"):
        experiment.resolve_sources(_fold_cfg(audio, video))
    # declared other people: the auxiliary corpus is used whole
    src = experiment.resolve_sources(_fold_cfg(audio, video, shared="no"))
    assert src["video"].speakers["train"] == ("A1", "A2", "A3", "A4")
    # other corpus names: not shared unless declared
    audio2, video2 = _two_corpora(tmp_path / "other", ["A1", "A2"], aux_name="faces")
    assert len(experiment.resolve_sources(_fold_cfg(audio2, video2))["video"].speakers["train"]) == 2
    with pytest.raises(DataError, match="held-out audio speakers"):
        experiment.resolve_sources(_fold_cfg(audio2, video2, shared="yes"))


def test_shared_auxiliary_items_without_a_speaker_are_refused(tmp_path):
    audio, video = _two_corpora(tmp_path, ["1", "2", "3", ""])
    with pytest.raises(DataError, match=r"v: 2 video items have no speaker id, so they cannot "
                                        r"be kept out"):
        experiment.resolve_sources(_fold_cfg(audio, video))


def test_crossval_stops_before_training_when_a_held_out_speaker_has_no_auxiliary_match(
        tmp_path, capsys):
    audio, video = _two_corpora(tmp_path, ["1", "2", "3"])  # speaker 04's faces missing
    out = tmp_path / "cv"
    code, err = _exit(crossval.main, ["--dataset", "custom", "--audio-dir", audio, "--video-dir",
                                video, "--folds", "loso", "--n-dev-speakers", "1", "--seeds",
                                "0", "--modes", "classic,emobed", "--epochs", "1", "--out",
                                str(out)], capsys)
    assert code == 2 and "['04']" in err and "share speakers" in err
    assert not (out / "runs").exists()


# -- case 3: reuse only with the same settings ------------------------------------------


def test_a_finished_run_is_not_reused_with_other_epochs(cls_run):
    cfg = configs.TrainConfig.from_json(json.loads(open(os.path.join(cls_run.path,
                                                                "config.json")).read()))
    metrics, reused = experiment.run_or_reuse(cfg)
    assert reused and metrics["epochs_trained"] == 3
    with pytest.raises(RunError, match=r"finished run with other settings \(epochs 3 -> 4\)"):
        experiment.run_or_reuse(dataclasses.replace(cfg, epochs=4))
    with pytest.raises(RunError, match=r"other settings \(epochs 3 -> 4, learning_rate "):
        experiment.run_or_reuse(dataclasses.replace(cfg, epochs=4, learning_rate=0.5))
    assert experiment.run_or_reuse(dataclasses.replace(cfg, verbose=2))[1]  # output only: reused


# -- cases 12, 14, 17: crossval checks before training ----------------------------------


def _cv(audio, out, *extra, video=None):
    return ["--dataset", "custom", "--audio-dir", audio, *(("--video-dir", video) if video
                                                            else ()),
            "--folds", "speaker:3", "--seeds", "0", "--modes", "classic,emobed", "--epochs",
            "1", "--out", str(out), *extra]


def test_crossval_refuses_a_repeated_seed(tmp_path, capsys):
    audio, video = _two_corpora(tmp_path, ["1", "2", "3", "4"])
    code, err = _exit(crossval.main, _cv(audio, tmp_path / "cv", "--seeds", "0,0,1", video=video),
                      capsys)
    assert code == 2 and "--seeds 0,0,1: seed 0 is given twice" in err


def test_items_without_a_speaker_name_the_folder_and_the_count(tmp_path, capsys):
    audio = _corpus(tmp_path / "a", "x", "audio", ["s1", "s2", "s3", ""], per_speaker=3)
    code, err = _exit(crossval.main, _cv(audio, tmp_path / "cv", "--modes", "classic"), capsys)
    assert code == 2
    assert f"{audio}: 3 audio items have no speaker id" in err and len(err.splitlines()) == 1
    code, err = _exit(train.main, ["--dataset", "custom", "--data-dir", audio, "--out",
                               str(tmp_path / "r"), "--mode", "classic", "--test-speakers",
                               "s1", "--dev-speakers", "s2"], capsys)
    assert code == 2 and f"{audio}: 3 audio items have no speaker id" in err
    assert not (tmp_path / "r").exists()


def test_crossval_checks_both_corpora_before_the_first_run(tmp_path, capsys):
    audio = _corpus(tmp_path / "a", "ravdess", "audio", ["01", "02", "03", "04"])
    video = _corpus(tmp_path / "v", "ravdess", "video", ["1", "2", "3", "4"],
                    labels=("a", "b", "z"))
    out = tmp_path / "cv"
    code, err = _exit(crossval.main, _cv(audio, out, video=video), capsys)
    assert code == 2 and "disagree on the task or label set" in err
    assert not (out / "runs").exists()  # found before the classic runs trained


def test_one_data_folder_with_other_people_in_the_auxiliary_is_not_shared(tmp_path):
    # the demo's layout: audio and video in one folder (one corpus name), other people
    data = tmp_path / "d"
    with DatasetWriter(str(data), "demo", "classification", CLASSES, {"audio": 3, "video": 2}) as w:
        for mod, prefix in (("audio", "a"), ("video", "v")):
            for s in range(4):
                for i in range(3):
                    w.add(Item(mod, np.full((1, 3 if mod == "audio" else 2), float(i), np.float32),
                               i, corpus="demo", speaker=f"{prefix}{s}",
                               recording=f"{mod}-{s}-{i}"))
    cfg = configs.default_config("custom", "unused", "audio", "emobed", data_dir=str(data))
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_speakers=("a0",),
                                                            dev_speakers=("a1",)))
    sources = experiment.resolve_sources(cfg)
    assert sources["video"].speakers["train"] == ("v0", "v1", "v2", "v3")
    with pytest.raises(DataError, match="held-out audio speakers"):  # declared shared: checked
        experiment.resolve_sources(dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, shared_speakers="yes")))
