"""Capacity chosen by inner speaker folds: only training speakers, only dev scores."""

import json

import numpy as np
import pytest

from emobed_tf import configs
from emobed_tf.data import speakers
from emobed_tf.experiments import capacity, crossval
from emobed_tf.records.schema import Item
from emobed_tf.records.writer import DatasetWriter


def test_inner_folds_hold_out_the_outer_dev_and_test_speakers():
    outer = speakers.make_folds([f"s{i}" for i in range(9)], "speaker:3")
    for fold in outer:
        inner = capacity.inner_folds(fold, 3)
        assert sorted(s for f in inner for s in f.dev) == sorted(fold.train)  # each once
        for f in inner:
            assert set(f.train) | set(f.dev) <= set(fold.train)
            assert not set(f.train) & set(f.dev)
            assert set(f.test) == set(fold.dev) | set(fold.test)
    with pytest.raises(configs.ConfigError, match="at least 2 training speakers"):
        capacity.inner_folds(speakers.Fold(0, ("a",), ("b",), ("c",)), 3)


def test_choice_reads_only_the_inner_dev_scores():
    grid = capacity.CapacityGrid(dense_l2=(0.1, 0.01), epochs=(5,), inner_folds=2)
    scores = {("l2=0.1,epochs=5", 0): {"dev": {"f1_macro": 0.5}, "test": {"f1_macro": 0.9}},
              ("l2=0.1,epochs=5", 1): {"dev": {"f1_macro": 0.7}, "test": {"f1_macro": 0.9}},
              ("l2=0.01,epochs=5", 0): {"dev": {"f1_macro": 0.4}, "test": {"f1_macro": 0.1}},
              ("l2=0.01,epochs=5", 1): {"dev": {"f1_macro": 0.9}, "test": {"f1_macro": 0.1}}}
    best, means = capacity.choose(grid, scores, "f1_macro")
    assert best.label == "l2=0.01,epochs=5"
    assert means == pytest.approx({"l2=0.1,epochs=5": 0.6, "l2=0.01,epochs=5": 0.65})
    tie = {k: {"dev": {"f1_macro": 0.5}} for k in scores}
    assert capacity.choose(grid, tie, "f1_macro")[0].label == "l2=0.1,epochs=5"  # the first


def _six_speaker_corpus(path):
    rng = np.random.default_rng(0)
    with DatasetWriter(str(path), "toy6", "classification", ["a", "b", "c"], {"audio": 4}) as w:
        for i in range(72):
            c = i % 3
            w.add(Item("audio", (rng.normal(size=(1, 4)) + 1.5 * c).astype(np.float32),
                       label_class=c, speaker=f"s{(i // 3) % 6}", recording=f"r{i}"))


def test_crossval_trains_each_fold_with_the_capacity_its_inner_folds_chose(tmp_path):
    _six_speaker_corpus(tmp_path / "d")
    base = configs.default_config("custom", str(tmp_path / "cv"), "audio", "classic",
                                  data_dir=str(tmp_path / "d"), verbose=0)
    folds = speakers.make_folds([f"s{i}" for i in range(6)], "speaker:3")[:1]
    grid = capacity.CapacityGrid(dense_l2=(0.1, 0.001), epochs=(1, 3), inner_folds=2)
    out = str(tmp_path / "cv")
    lines = []
    summary = crossval.run_crossval(base, folds, ["classic"], [0], out, jobs=1,
                                    with_probe=False, capacity=grid, log=lines.append)
    inner_lines = [ln for ln in lines if "capacity classic" in ln]
    assert len(inner_lines) == 8 and all("inner dev f1_macro" in ln for ln in inner_lines)
    assert not any("test" in ln for ln in inner_lines)  # the outer test speakers' scores stay unseen
    fold = folds[0]
    means = {}
    for cand in grid.candidates():
        vals = []
        for i in range(2):
            run = tmp_path / "cv" / "runs" / "capacity" / "classic" / "fold0" / cand.label / f"inner{i}"
            cfg = configs.TrainConfig.from_json(json.loads((run / "config.json").read_text()))
            assert set(cfg.data.train_speakers) | set(cfg.data.dev_speakers) <= set(fold.train)
            assert set(cfg.data.test_speakers) == set(fold.dev) | set(fold.test)
            assert (cfg.epochs, cfg.loss.dense_l2) == (cand.epochs, cand.dense_l2)
            vals.append(json.loads((run / "metrics.json").read_text())["dev"]["f1_macro"])
        means[cand.label] = np.mean(vals)
    best = max(grid.candidates(), key=lambda c: means[c.label])
    chosen = summary["capacity"]["chosen"]["classic"]["fold0"]
    assert chosen["label"] == best.label
    assert chosen["inner_dev"] == pytest.approx(means)
    outer = configs.TrainConfig.from_json(json.loads(
        (tmp_path / "cv" / "runs" / "classic" / "fold0-seed0" / "config.json").read_text()))
    assert (outer.epochs, outer.loss.dense_l2) == (best.epochs, best.dense_l2)
    md = crossval.format_markdown(summary, "t", folds)
    assert f"| 0 | {best.label} |" in md
