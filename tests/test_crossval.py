"""Speaker folds assigned at read time, and the cross-validation command."""

import dataclasses
import json
import os
import shutil
import sys

import numpy as np
import pytest

from emobed_tf import configs
from emobed_tf import crossval
from emobed_tf.experiments.crossval import probe_warning, summarise, system_config
from emobed_tf.experiments.significance import paired_differences as paired_tests
from emobed_tf.data import pipeline, source, speakers
from emobed_tf.experiments import experiment
from emobed_tf.experiments.rundir import RunDir
from emobed_tf.records.schema import DataError
from tests.conftest import OutsideProcess, write_classification


def test_folds_test_every_speaker_once_and_keep_held_out_speakers_out():
    spk = [f"{i:02d}" for i in range(1, 25)]
    for scheme, k in (("speaker:8", 8), ("loso", 24)):
        folds = speakers.make_folds(spk, scheme)
        assert len(folds) == k
        tested = [s for f in folds for s in f.test]
        assert sorted(tested) == spk
        for f in folds:
            assert not set(f.train) & (set(f.dev) | set(f.test))
            assert not set(f.dev) & set(f.test)
            assert sorted(f.train + f.dev + f.test) == spk
    eight = speakers.make_folds(spk, "speaker:8")
    assert eight[0].test == ("01", "09", "17") and eight[0].dev == ("02", "10", "18")
    loso = speakers.make_folds(spk, "loso")
    assert loso[23].test == ("24",) and loso[23].dev == ("01", "02")
    small = speakers.make_folds(spk, "speaker:8", train_speakers=4)
    assert all(len(f.train) == 4 for f in small)
    assert set(small[0].train) < set(eight[0].train)
    with pytest.raises(ValueError, match="loso or speaker:K"):
        speakers.make_folds(spk, "kfold")
    with pytest.raises(ValueError, match="K must be 3..24"):
        speakers.make_folds(spk, "speaker:30")
    # speaker:2 leaves no training group when the next fold is dev (issue 21, case 11)
    with pytest.raises(ValueError, match="the next fold as dev and at least one training "
                                         "speaker per fold, K must be 3..24"):
        speakers.make_folds(spk, "speaker:2")
    assert len(speakers.make_folds(spk, "speaker:2", dev_speakers=2)) == 2  # 12 test, 2 dev, 10 train
    with pytest.raises(ValueError, match="12 dev speakers .* K must be 3..24"):
        speakers.make_folds(spk, "speaker:2", dev_speakers=12)  # 12 test + 12 dev leave none


def test_paired_tests_match_hand_derived_values():
    # all six differences positive: exact two-sided Wilcoxon p = 2 / 2^6, sign test the same
    r = paired_tests([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    assert r["p_wilcoxon"] == pytest.approx(2 / 64)
    assert r["p_sign"] == pytest.approx(2 / 64)
    assert r["mean_diff"] == pytest.approx(0.035)
    # 5 wins, 1 loss: sign test p = 2 * (1 + 6) / 64
    r = paired_tests([0.02, 0.01, 0.03, -0.01, 0.02, 0.04])
    assert (r["wins"], r["losses"]) == (5, 1)
    assert r["p_sign"] == pytest.approx(14 / 64)
    tie = paired_tests([0.0, 0.0])
    assert tie["p_wilcoxon"] == 1.0 and tie["ties"] == 2


def _items_by_speaker(items, modality):
    out = {}
    for it in items:
        if it.modality == modality:
            out.setdefault(it.speaker, []).append(it)
    return out


def test_fold_view_counts_statistics_and_records(cls_data):
    path, _, items = cls_data
    src = source.Source.open(path)
    by_spk = _items_by_speaker(items, "audio")
    view = speakers.fold_view(src, "audio", {"train": ["s0", "s1"], "dev": ["s2"], "test": ["s3"]})
    info = view.manifest.modalities["audio"]
    assert info.counts == {s: sum(len(by_spk[k]) for k in spk) for s, spk in
                           (("train", ["s0", "s1"]), ("dev", ["s2"]), ("test", ["s3"]))}
    frames = np.concatenate([it.features for k in ("s0", "s1") for it in by_spk[k]])
    np.testing.assert_allclose(info.mean, frames.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(info.std, frames.std(0), rtol=1e-5)
    for split, spk in (("train", {"s0", "s1"}), ("test", {"s3"})):
        for cache in ("memory", "none"):
            ds = pipeline.make_modality_dataset(view, "audio", split, 5, with_ids=True,
                                         options=pipeline.PipelineOptions(cache=cache))
            recs = [r.decode() for b in ds for r in b["recording"].numpy()]
            assert sorted(recs) == sorted(it.recording for k in spk for it in by_spk[k])
    with pytest.raises(DataError, match="no audio item of the training speakers"):
        speakers.fold_view(src, "audio", {"train": ["nobody"]})


def test_no_held_out_speaker_of_either_modality_reaches_training(cls_data):
    path, _, items = cls_data
    cfg = configs.default_config("custom", "unused", "audio", "emobed", data_dir=path)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, dev_speakers=("s1",), test_speakers=("s3",)))
    sources = experiment.resolve_sources(cfg)
    seen = {}
    for mod, src in sources.items():
        ds = pipeline.make_modality_dataset(src, mod, "train", 8, with_ids=True)
        seen[mod] = {s.decode() for b in ds for s in b["speaker"].numpy()}
    assert seen == {"audio": {"s0", "s2"}, "video": {"s0", "s2"}}
    # the auxiliary's statistics are those of its training speakers' frames
    video = _items_by_speaker(items, "video")
    frames = np.concatenate([it.features for k in ("s0", "s2") for it in video[k]])
    np.testing.assert_allclose(sources["video"].manifest.modalities["video"].mean,
                               frames.mean(0), rtol=1e-5, atol=1e-6)
    bad = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, test_speakers=("s9",)))
    with pytest.raises(DataError, match=r"test speakers \['s9'\]"):
        experiment.resolve_sources(bad)


CV_ARGV = ("--folds", "speaker:2", "--n-dev-speakers", "1", "--seeds", "0",
           "--modes", "classic,emobed", "--epochs", "1", "--verbose", "0")


def start_crossval(root):
    """Starts ``python -m emobed_tf.crossval`` on a 4-speaker corpus, 2 folds x 2 modes, one
    seed (the ``crossval_process`` fixture of conftest)."""
    _, items = write_classification(root / "d", n=(12, 6, 6))
    argv = ["--dataset", "custom", "--data-dir", str(root / "d"), *CV_ARGV,
            "--out", str(root / "cv")]
    proc = OutsideProcess([sys.executable, "-m", "emobed_tf.crossval", *argv], root, "cv")
    return {"out": root / "cv", "argv": argv, "items": items, "procs": {"cv": proc}}


@pytest.fixture
def crossval_out(crossval_process):
    code, out, err = crossval_process["procs"]["cv"].wait()
    assert code == 0, (out + err)[-3000:]
    return crossval_process["out"], crossval_process["argv"], out


def test_crossval_command_trains_every_run_reuses_them_and_reports(crossval_out, capsys,
                                                                   crossval_process):
    out, argv, first = crossval_out
    assert "[4/4]" in first and "reused" not in first
    report = json.loads((out / "crossval.json").read_text())
    # one corpus (shared speakers): each fold leaves out the held-out speakers' video items
    items = crossval_process["items"]
    assert report["auxiliary_excluded"] == {
        f"fold{f['index']}": {"video": sum(1 for it in items if it.modality == "video"
                                           and it.speaker in f["test"] + f["dev"])}
        for f in report["folds"]}
    assert all(v["video"] > 0 for v in report["auxiliary_excluded"].values())
    assert "auxiliary items left out" in (out / "crossval.md").read_text()
    assert report["systems"]["emobed"]["n_pairs"] == 2
    # fold i tests sorted(speakers)[i::2]; its one dev speaker is the next one after them
    assert [(f["test"], f["dev"]) for f in report["folds"]] == [
        (["s0", "s2"], ["s3"]), (["s1", "s3"], ["s0"])]
    diffs = []
    for fold in report["folds"]:
        scores = {}
        for mode in ("classic", "emobed"):
            run = out / "runs" / mode / f"fold{fold['index']}-seed0"
            cfg = configs.TrainConfig.from_json(json.loads((run / "config.json").read_text()))
            assert cfg.data.test_speakers == tuple(fold["test"])
            assert cfg.data.dev_speakers == tuple(fold["dev"])
            assert cfg.mode == mode and cfg.seed == 0
            scores[mode] = json.loads((run / "metrics.json").read_text())["test"]["f1_macro"]
            assert report["runs"][mode][f"fold{fold['index']}-seed0"]["f1_macro"] == \
                pytest.approx(scores[mode])
        diffs.append(scores["emobed"] - scores["classic"])
    row = report["systems"]["emobed"]
    assert row["f1_macro_vs_classic"]["mean_diff"] == pytest.approx(np.mean(diffs))
    assert os.path.getsize(out / "crossval.png") > 1000
    assert "| emobed | 2 |" in (out / "crossval.md").read_text()
    # the linear probe: one per fold, fitted on that fold's training speakers only
    probe_diffs = []
    for fold in report["folds"]:
        res = json.loads((out / "runs" / "probe" / f"fold{fold['index']}" / "metrics.json"
                          ).read_text())
        cfg = configs.TrainConfig.from_json(json.loads(
            (out / "runs" / "classic" / f"fold{fold['index']}-seed0" / "config.json").read_text()))
        assert res["probe"]["train_speakers"] == sorted(cfg.data.train_speakers)
        assert not set(res["probe"]["train_speakers"]) & set(fold["test"] + fold["dev"])
        classic = report["runs"]["classic"][f"fold{fold['index']}-seed0"]["f1_macro"]
        probe_diffs.append(classic - res["test"]["f1_macro"])
    assert report["vs_probe"]["classic"]["mean_diff"] == pytest.approx(np.mean(probe_diffs))
    assert report["systems"]["probe"]["n_runs"] == 2
    md = (out / "crossval.md").read_text()
    assert "Against the linear probe" in md
    assert ("**Below the probe**" in md) == (np.mean(probe_diffs) < -0.005)
    assert crossval.main(argv) == 0  # in this process, the same command reuses every run
    assert capsys.readouterr().out.count("reused") == 4


def test_probe_warning_names_the_systems_more_than_half_a_point_below():
    summary = {"keys": ["f1_macro"], "capacity": None,
               "vs_probe": {"classic": {"mean_diff": -0.0051}, "emobed": {"mean_diff": -0.004}}}
    line = probe_warning(summary)
    assert "classic -0.51 pt" in line and "emobed" not in line and "--capacity inner" in line
    summary["vs_probe"]["classic"]["mean_diff"] = -0.005
    assert probe_warning(summary) is None


def test_dev_corpus_report_rows_carry_the_paired_statistics():
    from benchmarks import dev_corpus

    base = {(f, s): {"f1_macro": 0.5 + 0.01 * f, "uar": 0.5, "accuracy": 0.5}
            for f in range(4) for s in range(2)}
    better = {k: {**v, "f1_macro": v["f1_macro"] + 0.02 + 0.001 * k[0]} for k, v in base.items()}
    summary = summarise({"classic": base, "emobed": better}, ["f1_macro", "uar", "accuracy"])
    row = dev_corpus.summary_row(summary["systems"]["emobed"])
    # 8 runs paired, analysed over the 4 fold means (seeds averaged within a fold)
    assert row["n_pairs"] == 8 and (row["wins"], row["losses"]) == (4, 0)
    assert row["diff_vs_classic"] == pytest.approx(0.02 + 0.001 * 1.5)
    assert row["p_vs_classic"] == pytest.approx(2 / 2 ** 4)  # exact Wilcoxon, all 4 positive
    t = summary["systems"]["emobed"]["f1_macro_vs_classic"]
    d = [0.02 + 0.001 * f for f in range(4)]
    half = 3.182446305284263 * np.std(d, ddof=1) / 2  # t(.975, 3) x sd / sqrt(4)
    assert (t["ci_low"], t["ci_high"]) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    assert summary["systems"]["emobed"]["p_holm"] == pytest.approx(2 / 2 ** 4)  # family of 1
    assert row["f1_macro_mean"] == pytest.approx(np.mean([v["f1_macro"] for v in better.values()]))
    md = dev_corpus.markdown({"folds": "speaker:4", "seeds": [0, 1], "default_system": "emobed",
                              "settings": {"faces": {"classic": dev_corpus.summary_row(
                                  summary["systems"]["classic"]), "emobed": row}},
                              "learning_curve": {}, "commands": ["python -m x"]})
    assert "| emobed | 0.5365 +- " in md and "+2.15 pt | 4/0 | 0.1250" in md


def test_evaluate_scores_a_fold_run_on_its_own_test_speakers(crossval_out, crossval_process,
                                                              tmp_path):
    from emobed_tf.experiments import evaluate

    out, _, _ = crossval_out
    run = shutil.copytree(out / "runs" / "emobed" / "fold0-seed0", tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())
    test_speakers = RunDir(str(run)).config().data.test_speakers
    assert test_speakers == ("s0", "s2")
    rep = evaluate.evaluate(str(run), figures=False)
    # every audio item of the fold's test speakers, whatever their extraction split
    n = sum(1 for it in crossval_process["items"]
            if it.modality == "audio" and it.speaker in test_speakers)
    assert n == 12 and rep["scores"]["test"]["n"] == metrics["test"]["n"] == n
    assert rep["scores"]["test"]["f1_macro"] == pytest.approx(metrics["test"]["f1_macro"])


def test_dev_corpus_variant_study_pairs_runs_with_the_main_classic(tmp_path):
    """A variant's classic is compared with the main study's classic run by run (same fold and
    seed), EmoBed with the variant's classic; the markdown shows both differences."""
    from benchmarks import dev_corpus

    main = tmp_path / "cv" / "faces"
    keys = [f"fold{f}-seed{s}" for f in range(3) for s in range(2)]
    main_f1 = {k: 0.40 + 0.01 * i for i, k in enumerate(keys)}
    var_f1 = {k: v + (0.05 if i % 3 else -0.01) for i, (k, v) in enumerate(main_f1.items())}
    for k in keys:
        (main / "runs" / "classic" / k).mkdir(parents=True)
        (main / "runs" / "classic" / k / "metrics.json").write_text(
            json.dumps({"test": {"f1_macro": main_f1[k]}}))
    emobed_row = {"f1_macro_mean": 0.47, "f1_macro_vs_classic": paired_tests([0.01] * 6)}
    rep = {"seeds": [0, 1], "runs": {"classic": {k: {"f1_macro": var_f1[k]} for k in keys}},
           "systems": {"classic": {"f1_macro_mean": float(np.mean(list(var_f1.values())))},
                       "emobed": emobed_row}}
    (tmp_path / "spk" / "faces").mkdir(parents=True)
    (tmp_path / "spk" / "faces" / "crossval.json").write_text(json.dumps(rep))
    study = dev_corpus.variant_study(str(tmp_path), "spk", str(main))
    assert list(study) == ["faces"]  # video_au has no report: left out
    q = study["faces"]
    diffs = [var_f1[k] - main_f1[k] for k in keys]
    assert q["variant_vs_functionals"]["mean_diff"] == pytest.approx(np.mean(diffs))
    # over the 3 fold means: +.02, +.02, +.05
    assert (q["variant_vs_functionals"]["wins"], q["variant_vs_functionals"]["losses"]) == (3, 0)
    assert q["classic_functionals"] == pytest.approx(np.mean(list(main_f1.values())))
    md = dev_corpus.markdown({"folds": "speaker:3", "seeds": [0, 1], "default_system": "emobed",
                              "settings": {}, "commands": [], "speaker_normalisation": study})
    assert "## Per-speaker normalisation" in md
    assert f"| faces | classic, per-speaker normalisation | {q['classic_variant']:.4f} | " \
           f"{100 * np.mean(diffs):+.2f} pt vs main | 3/0 |" in md
    assert ("| faces | emobed, per-speaker normalisation | 0.4700 | +1.00 pt vs its classic "
            "| 6/0 |") in md


def test_a_warm_up_applies_to_the_systems_that_read_the_auxiliary():
    base = configs.default_config("custom", "unused", "audio", "emobed", data_dir="d")
    base = dataclasses.replace(base, loss=dataclasses.replace(base.loss, aux_warmup_epochs=3))
    classic = system_config(base, "classic")
    assert classic.loss.aux_warmup_epochs == 0 and classic.mode == "classic"
    assert system_config(base, "joint").loss.aux_warmup_epochs == 3
    proto = system_config(base, "emobed+prototype")
    assert (proto.loss.aux_warmup_epochs, proto.loss.crossmodal_loss) == (3, "prototype")


def test_dev_corpus_keeps_every_pretrained_section_when_the_recipe_changes():
    """A rerun under a new dense default moves the previous section to the front of
    pretrained_earlier; a study of the current recipe not rerun here is kept; the tables
    of the report show each study once per default, with the recipe it trained with."""
    from benchmarks import dev_corpus

    def study(classic, emobed, **recipe):
        over = {"wins": 5, "n_pairs": 8, "p_wilcoxon": 0.25}
        return {"target": "audio", "train_speakers": 18, "seeds": [0, 1, 2], "dense_l2": 0.01,
                **recipe, "systems": {
                    "classic": {"f1_macro_mean": classic, "f1_macro_sd": 0.05, "n_runs": 24},
                    "emobed": {"f1_macro_mean": emobed, "f1_macro_sd": 0.05, "n_runs": 24,
                               "p_vs_classic": 0.3, "diff_vs_classic": emobed - classic,
                               "wins": 13, "losses": 11, "n_pairs": 24,
                               "over_folds": dict(over)}}}

    old = {"a": study(0.70, 0.71), "b": study(0.52, 0.53)}  # recorded before the recipe
    result = {"pretrained": old, "pretrained_earlier": {"dense_l2": [1e-4], "studies": {}}}
    new_recipe = {"batch_size": 1024, "epochs": 300, "select_on": "last"}
    dev_corpus.merge_pretrained(result, {"a": study(0.72, 0.725, **new_recipe)})
    assert list(result["pretrained"]) == ["a"]
    first, second = result["pretrained_earlier"]
    assert first["recipe"] == (0.01, 64, 50, "score") and set(first["studies"]) == {"a", "b"}
    assert second == {"dense_l2": [1e-4], "studies": {}}
    # Holm over the one comparison of the section: unadjusted
    assert result["pretrained"]["a"]["systems"]["emobed"]["over_folds"]["p_holm"] == 0.25
    # a later partial rerun under the same recipe keeps the studies it did not rerun
    dev_corpus.merge_pretrained(result, {"b": study(0.55, 0.56, **new_recipe)})
    assert sorted(result["pretrained"]) == ["a", "b"] and len(result["pretrained_earlier"]) == 2
    fam = [result["pretrained"][k]["systems"]["emobed"]["over_folds"] for k in "ab"]
    assert [f["family_size"] for f in fam] == [2, 2] and fam[0]["p_holm"] == 0.5
    md = "\n".join(dev_corpus.earlier_markdown(e, result["pretrained"])
                   for e in result["pretrained_earlier"])
    assert "batch size 64, 50 epochs, select on score" in md
    assert "| a | emobed | 0.7000 | +1.00 pt | 0.2500 | 0.7200 | +0.50 pt | 0.2500 |" in md


def test_dev_corpus_per_run_rows_recompute_the_fold_mean_test():
    """The committed per-run rows (system x fold x seed, with the test speakers) give back the
    study's p over folds (seeds averaged within a fold, Wilcoxon over the fold means)."""
    from scipy.stats import wilcoxon

    from benchmarks import dev_corpus

    rng = np.random.default_rng(0)
    runs = {m: {f"fold{f}-seed{s}": {"f1_macro": float(rng.uniform(0.5, 0.8)), "uar": 0.5,
                                      "accuracy": 0.5} for f in range(6) for s in range(3)}
            for m in ("classic", "emobed")}
    rep = {"runs": runs, "folds": [{"index": f, "test": [f"{f:02d}", f"{f + 8:02d}"]}
                                   for f in range(6)]}
    rows = dev_corpus.per_run_rows(rep)
    assert len(rows) == 36 and rows[0]["test_speakers"] == "00,08"
    means = {m: [np.mean([r["f1_macro"] for r in rows if r["system"] == m and r["fold"] == f])
                 for f in range(6)] for m in ("classic", "emobed")}
    diffs = np.subtract(means["emobed"], means["classic"])
    expected = dev_corpus.fold_mean_test(runs["emobed"], runs["classic"])
    assert wilcoxon(diffs).pvalue == pytest.approx(expected["p_wilcoxon"], abs=1e-6)
    assert diffs.mean() == pytest.approx(expected["mean_diff"], abs=1e-6)
