"""The in-memory fast path (``emobed_tf.data.memory``), checkpoints on a schedule, and runs side
by side (``emobed_tf.experiments.runner``)."""

import dataclasses
import json
import os

import numpy as np
import pytest

from emobed_tf import configs
from emobed_tf.data import memory, speakers
from emobed_tf.data.pipeline import PipelineOptions
from emobed_tf.data.source import Source
from emobed_tf.experiments import experiment, runner
from emobed_tf.experiments.rundir import RunDir
from emobed_tf.experiments.scoring import predict_arrays, predict_split
from tests.conftest import write_classification


def _cfg(data, out, mode="classic", cache="auto", encoder_type="dense", epochs=6, **kw):
    cfg = configs.default_config("custom", out=str(out), data_dir=str(data), mode=mode,
                                 epochs=epochs, seed=3, verbose=0, select_on="last")
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, encoder_type=encoder_type, encoder_units=8,
                                       shared_units=8, dense_dropout=0.0, dropout=0.0),
        data=dataclasses.replace(cfg.data, batch_size=kw.pop("batch_size", 64), cache=cache),
        **kw)


def _history(out):
    return json.load(open(RunDir(str(out)).history_path))


@pytest.fixture(scope="module")
def dense_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dense") / "d"
    write_classification(folder, n=(30, 12, 12), lengths=(1, 1))
    return str(folder)


@pytest.fixture(scope="module")
def seq_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("seq") / "d"
    write_classification(folder, n=(20, 8, 8), lengths=(2, 9))
    return str(folder)


# -- the data ----------------------------------------------------------------------------------


def test_index_batches_are_seeded_permutations_and_a_resumed_stream_is_the_tail():
    n, bs = 7, 3
    def take(ds, k):
        return [b.tolist() for b in ds.take(k).as_numpy_iterator()]

    full = take(memory.index_batches(n, bs, seed=4), 9)
    for e in range(3):  # every pass: each index once, batches of 3, 3, 1
        one = full[3 * e:3 * e + 3]
        assert [len(b) for b in one] == [3, 3, 1] and sorted(sum(one, [])) == list(range(n))
    assert full[:3] != full[3:6]  # reshuffled every pass
    assert full == take(memory.index_batches(n, bs, seed=4), 9)
    assert full[4:] == take(memory.index_batches(n, bs, seed=4, skip=4), 5)
    assert full != take(memory.index_batches(n, bs, seed=5), 9)
    # the auxiliary stream: the same passes, in full batches across their ends
    endless = take(memory.index_batches(n, bs, seed=4, endless=True), 7)
    assert all(len(b) == 3 for b in endless) and sum(endless, []) == sum(full, [])[:21]


def test_mixed_stream_keeps_the_target_epoch_and_an_independent_auxiliary(dense_data):
    src = Source.open(dense_data)
    splits = {m: memory.load_split(src, m, "train") for m in ("audio", "video")}
    ds, steps = memory.make_training_stream(splits, "audio", {"audio": 8, "video": 5}, seed=1)
    assert steps == 4  # 30 target items in batches of 8
    batches = list(ds.take(8))
    sizes = [(int(b["audio"]["label"].shape[0]), int(b["video"]["label"].shape[0]))
             for b in batches]
    assert sizes == [(8, 5), (8, 5), (8, 5), (6, 5)] * 2
    # an epoch holds every target item once: its features are the split's rows, permuted
    rows = np.concatenate([b["audio"]["features"].numpy()[:, 0] for b in batches[:4]])
    assert np.allclose(np.sort(rows, 0), np.sort(splits["audio"].features[:, 0], 0))
    # resumed after epoch 1: the batches of the uninterrupted stream from epoch 2 on
    resumed, _ = memory.make_training_stream(splits, "audio", {"audio": 8, "video": 5}, seed=1,
                                             start_epoch=1)
    for a, b in zip(batches[4:], resumed.take(4)):
        for m in ("audio", "video"):
            assert np.array_equal(a[m]["features"].numpy(), b[m]["features"].numpy())


def test_sequences_are_cut_to_each_batch_and_bucketed_as_streamed(seq_data):
    split = memory.load_split(Source.open(seq_data), "audio", "train")
    lengths = split.mask.sum(1)
    assert split.features.shape[1] == lengths.max() and lengths.min() >= 2
    ds, _ = memory.make_training_stream({"audio": split}, "audio", {"audio": 4}, seed=0)
    for b in ds.take(5):
        mask = b["audio"]["mask"].numpy()
        longest = mask.sum(1).max()
        assert mask.shape[1] == 8 if longest <= 8 else mask.shape[1] == 16  # bucket_length
        assert np.all(b["audio"]["features"].numpy()[~mask] == 0)


def test_one_pass_over_fold_shards_gives_the_splits_read_one_by_one(dense_data):
    cfg = dataclasses.replace(_cfg(dense_data, "unused"), data=dataclasses.replace(
        _cfg(dense_data, "unused").data, train_speakers=("s0", "s1"), dev_speakers=("s2",),
        test_speakers=("s3",)))
    src = experiment.resolve_sources(cfg)["audio"]
    opts = experiment.pipeline_options(cfg, src.manifest)
    together = memory.load_splits(src, "audio", ["train", "dev", "test"], opts)
    for split in ("train", "dev", "test"):
        alone = memory.load_split(src, "audio", split, opts)
        got = together[split]
        assert len(got) == len(alone) > 0
        assert np.array_equal(got.features, alone.features)
        assert np.array_equal(got.label, alone.label) and got.recordings == alone.recordings
        assert set(got.speakers) == set(src.speaker_filter(split))


def test_predictions_from_memory_equal_the_streamed_ones(seq_data, tmp_path):
    cfg = _cfg(seq_data, tmp_path / "run", encoder_type="gru", epochs=2)
    experiment.run(cfg)
    model = RunDir(cfg.out).load_model()
    src = Source.open(seq_data)
    streamed = predict_split(model, src, "audio", "test", 3)
    held = predict_arrays(model, memory.load_split(src, "audio", "test"), "audio",
                          "classification", 3)
    assert held.recordings == streamed.recordings
    assert np.array_equal(held.gold, streamed.gold)
    assert np.allclose(held.pred, streamed.pred, atol=1e-6)


# -- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["classic", "emobed"])
def test_fast_path_learns_what_the_streamed_path_learns(dense_data, tmp_path, mode):
    """Whole-set batches (the dense default; here each auxiliary batch is its whole set too):
    the order inside a batch changes nothing but the order of a sum, so both paths give the
    same loss every epoch."""
    runs = {}
    for cache in ("auto", "none"):
        cfg = _cfg(dense_data, tmp_path / cache, mode=mode, cache=cache, epochs=8,
                   batch_size=64, checkpoint_every=1)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data,
                                                                auxiliary_batch_size=30))
        runs[cache] = experiment.run(cfg)
    assert runs["auto"]["in_memory"] and not runs["none"]["in_memory"]
    fast, streamed = _history(tmp_path / "auto"), _history(tmp_path / "none")
    for key in ("loss", "target_loss") + (("auxiliary_loss", "triplet_loss")
                                          if mode == "emobed" else ()):
        assert np.allclose([h[key] for h in fast], [h[key] for h in streamed], atol=1e-5), key
    assert np.allclose([h["val_f1_macro"] for h in fast], [h["val_f1_macro"] for h in streamed])
    for split in ("dev", "test"):
        assert runs["auto"][split]["f1_macro"] == pytest.approx(runs["none"][split]["f1_macro"])
        assert runs["auto"][split]["n"] == runs["none"][split]["n"] == 12


def test_a_seeded_fast_run_is_reproducible_and_checkpoints_on_its_schedule(dense_data, tmp_path):
    cfgs = [dataclasses.replace(_cfg(dense_data, tmp_path / f"r{i}", mode="emobed", epochs=10,
                                     batch_size=8), model=dataclasses.replace(
        _cfg(dense_data, "x").model, dense_dropout=0.5)) for i in range(2)]
    results = [experiment.run(c) for c in cfgs]
    a, b = (_history(c.out) for c in cfgs)
    assert [h["loss"] for h in a] == [h["loss"] for h in b]  # identical, not merely close
    assert results[0]["test"] == results[1]["test"]
    assert results[0]["checkpoint_every"] == 1  # auto: a tenth of 10 epochs
    # --select-on last: the dev split is scored at the checkpoints (every epoch here)
    assert all("val_f1_macro" in h for h in a)
    # TensorBoard logs: one event per epoch in train/ and validation/
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(os.path.join(cfgs[0].out, "logs", "train"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("epoch_loss")] == list(range(10))
    assert np.allclose([e.value for e in acc.Scalars("epoch_loss")], [h["loss"] for h in a])


def test_checkpoints_every_k_epochs_and_a_resume_continues_the_same_run(dense_data, tmp_path):
    import keras

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == 7:
                raise KeyboardInterrupt

    whole = _cfg(dense_data, tmp_path / "whole", mode="emobed", epochs=9, batch_size=8,
                 checkpoint_every=3)
    cut = dataclasses.replace(whole, out=str(tmp_path / "cut"))
    experiment.run(whole)
    with pytest.raises(KeyboardInterrupt):
        experiment.run(cut, callbacks=[Stop()])
    state = RunDir(cut.out).resume_state()
    assert state["epoch"] == 6 and [h["epoch"] for h in state["history"]] == list(range(1, 7))
    experiment.run(cut)  # resumes after epoch 6, on the batches epoch 7 would have read
    a, b = _history(whole.out), _history(cut.out)
    assert [h["epoch"] for h in b] == list(range(1, 10))
    assert np.allclose([h["loss"] for h in a], [h["loss"] for h in b], atol=1e-6)
    # dev scored at the checkpoints (every 3 epochs) and at the end
    assert [h["epoch"] for h in a if "val_f1_macro" in h] == [3, 6, 9]


def test_selecting_on_the_dev_score_keeps_the_best_epoch_written_at_a_checkpoint(dense_data,
                                                                                 tmp_path):
    cfg = dataclasses.replace(_cfg(dense_data, tmp_path / "run", epochs=8, batch_size=8,
                                   checkpoint_every=4), select_on="score", patience=99)
    res = experiment.run(cfg)
    hist = _history(cfg.out)
    assert all("val_f1_macro" in h for h in hist)  # selection needs every epoch's dev score
    best = max(hist, key=lambda h: h["val_f1_macro"])  # the first of equal scores
    assert res["best_epoch"] == best["epoch"]
    assert res["dev"]["f1_macro"] == pytest.approx(best["val_f1_macro"])


def test_auto_checkpoint_interval():
    cfg = configs.TrainConfig(dataset="demo", out="unused", epochs=300)
    assert experiment.checkpoint_interval(cfg, True) == 30
    assert experiment.checkpoint_interval(cfg, False) == 1
    assert experiment.checkpoint_interval(dataclasses.replace(cfg, epochs=7), True) == 1
    assert experiment.checkpoint_interval(dataclasses.replace(cfg, checkpoint_every=5),
                                          False) == 5


def test_the_streamed_path_stays_for_data_over_the_cache_limit(dense_data):
    src = {"audio": Source.open(dense_data)}
    assert memory.applies(src, "audio", PipelineOptions(), "classification")
    assert not memory.applies(src, "audio", PipelineOptions(cache="none"), "classification")
    assert not memory.applies(src, "audio", PipelineOptions(cache_limit_mb=0), "classification")
    assert not memory.applies(src, "audio", PipelineOptions(window=10), "regression")
    assert not memory.applies(src, "audio", PipelineOptions(), "classification", "mirrored")


# -- runs side by side -------------------------------------------------------------------------


def test_default_jobs_follows_cores_memory_and_gpu(monkeypatch):
    monkeypatch.setattr(runner, "gpu_visible", lambda: False)
    monkeypatch.setattr(runner, "usable_cores", lambda: 8)
    monkeypatch.setattr(runner, "available_gib", lambda: 64.0)
    assert runner.default_jobs(100) == 8 and runner.default_jobs(3) == 3
    monkeypatch.setattr(runner, "available_gib", lambda: 5.0)
    assert runner.default_jobs(100) == 2  # 2 GiB per worker
    monkeypatch.setattr(runner, "gpu_visible", lambda: True)
    assert runner.default_jobs(100) == 1
    assert runner.resolve_jobs(4, 2) == 2 and runner.resolve_jobs(1, 9) == 1
    with pytest.raises(ValueError):
        runner.resolve_jobs(-1, 3)


def test_runs_in_parallel_workers_equal_the_same_runs_alone(dense_data, tmp_path):
    cfgs = [_cfg(dense_data, tmp_path / "pool" / f"r{s}", mode="emobed", epochs=5, batch_size=8,
                 seed=s) for s in (0, 1, 2)]
    lines = []
    pooled = runner.run_many(cfgs, jobs=2, labels=["a", "b", "c"], log=lines.append)
    alone = [experiment.run(dataclasses.replace(c, out=c.out.replace("pool", "alone")))
             for c in cfgs]
    for p, a, c in zip(pooled, alone, cfgs):
        assert p["test"] == a["test"]
        assert _history(c.out) == _history(c.out.replace("pool", "alone"))
    assert lines[0] == "3 runs to train in 2 parallel jobs (1 thread each)"
    assert sorted(line.split("]")[0] for line in lines[1:]) == ["[1/3", "[2/3", "[3/3"]
    assert "ETA" in lines[1] and "elapsed" in lines[-1]
    # a rerun reuses every finished run, in this process
    again = []
    assert runner.run_many(cfgs, jobs=2, log=again.append) == pooled
    assert len(again) == 3 and all("(reused)" in line for line in again)


def test_fold_runs_of_a_crossval_leave_held_out_speakers_out_of_memory(dense_data, tmp_path):
    """The arrays a fold's run trains on hold its training speakers only."""
    cfg = _cfg(dense_data, tmp_path / "run", mode="emobed")
    folds = speakers.make_folds(["s0", "s1", "s2", "s3"], "speaker:4")
    from emobed_tf.experiments.crossval import fold_config

    fcfg = fold_config(cfg, "emobed", folds[0], 0, str(tmp_path))
    sources = experiment.resolve_sources(fcfg)
    splits = experiment.load_memory_splits(fcfg, sources)
    assert set(splits["audio", "train"].speakers) == set(folds[0].train)
    assert set(splits["audio", "test"].speakers) == set(folds[0].test)
    held = set(folds[0].test) | set(folds[0].dev)
    assert not held & set(splits["video", "train"].speakers)  # the same corpus: left out too


def test_an_empty_training_split_is_refused_not_trained_forever(dense_data):
    from emobed_tf.records.schema import DataError

    src = Source.open(dense_data)
    split = memory.load_split(src, "audio", "train")
    empty = dataclasses.replace(split, features=split.features[:0], mask=split.mask[:0],
                                label=split.label[:0], recordings=[], speakers=[])
    with pytest.raises(DataError, match="video training split holds no items"):
        memory.make_training_stream({"audio": split, "video": empty}, "audio",
                                    {"audio": 4, "video": 4})


def test_cached_functions_do_not_keep_a_model_alive(dense_data, tmp_path):
    """A study's worker trains model after model: the traced metric and forward functions
    must let each one go."""
    import gc
    import weakref

    from emobed_tf.experiments.scoring import _forward_fn

    cfg = _cfg(dense_data, tmp_path / "run", epochs=2)
    experiment.run(cfg)
    model = RunDir(cfg.out).load_model("last")
    model.get_metrics_result()
    _forward_fn(model, "audio")(np.zeros((2, 1, 6), np.float32), np.ones((2, 1), bool))
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


def test_labels_per_class_keeps_k_items_per_speaker_and_class_the_same_for_every_system(
        dense_data, tmp_path):
    from collections import Counter

    folds = speakers.make_folds(["s0", "s1", "s2", "s3"], "speaker:4")
    from emobed_tf.experiments.crossval import fold_config

    full = {}
    for k in (0, 1, 2):
        base = _cfg(dense_data, tmp_path / "run", mode="emobed")
        base = dataclasses.replace(base, data=dataclasses.replace(base.data, labels_per_class=k))
        got = {}
        for mode in ("classic", "emobed"):
            fcfg = fold_config(base, mode, folds[0], 1, str(tmp_path))
            got[mode] = experiment.load_memory_splits(fcfg, experiment.resolve_sources(fcfg))
        a, b = got["classic"]["audio", "train"], got["emobed"]["audio", "train"]
        assert a.recordings == b.recordings  # the same labelled items for both systems
        if k == 0:
            full = Counter(zip(a.speakers, a.label.tolist()))
            continue
        kept = Counter(zip(a.speakers, a.label.tolist()))
        assert kept == {key: min(n, k) for key, n in full.items()}  # k per speaker and class
        assert len(got["emobed"]["video", "train"]) > len(a)  # the auxiliary keeps every label
        # the held-out partitions are untouched
        assert len(got["classic"]["audio", "test"]) == sum(
            1 for s in got["classic"]["audio", "test"].speakers if s in folds[0].test)
    one = dataclasses.replace(_cfg(dense_data, tmp_path / "r1", mode="classic", epochs=2),
                              seed=5)
    one = dataclasses.replace(one, data=dataclasses.replace(one.data, labels_per_class=1))
    metrics = experiment.run(one)
    kinds = len(set(memory.load_split(Source.open(dense_data), "audio", "train").label.tolist()))
    assert metrics["target_train_items"] <= kinds * 4
    streamed = dataclasses.replace(one, out=str(tmp_path / "r2"),
                                   data=dataclasses.replace(one.data, cache="none"))
    with pytest.raises(configs.ConfigError, match="needs the in-memory path"):
        experiment.run(streamed)
