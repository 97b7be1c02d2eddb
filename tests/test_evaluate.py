import json
import os

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn import metrics as skm

from emobed_tf.evaluate import main as evaluate_main
from emobed_tf.experiments import evaluate
from emobed_tf.experiments import postprocess
from emobed_tf.experiments import significance
from emobed_tf.model.metrics import ccc
from tests.conftest import saved_predictions


def test_classification_report_and_comparison(cls_run, classic_run, tmp_path):
    # evaluate writes into both run folders: copies of the shared runs
    a = cls_run.copy(tmp_path / "a")
    b = classic_run.copy(tmp_path / "b")
    assert evaluate_main(["--run", a, "--compare", b, "--tsne-points", "20"]) == 0
    rep = json.load(open(os.path.join(a, "report", "report.json")))
    for f in ("report.md", "confusion_dev.png", "tsne_dev.png"):
        assert os.path.getsize(os.path.join(a, "report", f)) > 0
    dev = rep["scores"]["dev"]
    cm = np.asarray(dev["confusion"])
    gold = np.repeat(np.arange(3), cm.sum(1))
    pred = np.concatenate([np.repeat(np.arange(3), row) for row in cm])
    assert cm.sum() == dev["n"] == 12
    assert dev["f1_macro"] == pytest.approx(skm.f1_score(
        gold, pred, average="macro", labels=sorted(set(gold) | set(pred))))
    for i, name in enumerate(("a", "b", "c")):
        if dev["f1_per_class"][name] is not None:
            assert dev["f1_per_class"][name] == pytest.approx(
                skm.f1_score(gold, pred, labels=[i], average="macro", zero_division=0))
    # the confusion matrix is the saved model's dev predictions against the gold labels
    p = saved_predictions(a, "dev")
    np.testing.assert_array_equal(cm, skm.confusion_matrix(p.gold, np.asarray(p.pred).argmax(1),
                                                           labels=[0, 1, 2]))
    # against the other run on the same 12 dev items: exact McNemar and a paired bootstrap
    q = saved_predictions(b, "dev")
    right_a = np.asarray(p.pred).argmax(1) == np.asarray(p.gold)
    right_b = np.asarray(q.pred).argmax(1) == np.asarray(q.gold)
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    acc = rep["comparison"]["dev"]["accuracy"]
    assert (acc["only_a"], acc["only_b"]) == (only_a, only_b)
    assert acc["p"] == pytest.approx(1.0 if only_a + only_b == 0 else
                                     binomtest(only_a, only_a + only_b).pvalue)
    f1 = rep["comparison"]["dev"]["f1_macro"]
    f1_of = lambda pred: skm.f1_score(p.gold, np.asarray(pred).argmax(1), labels=[0, 1, 2],
                                      average="macro", zero_division=0)
    assert f1["diff"] == pytest.approx(f1_of(p.pred) - f1_of(q.pred))
    assert f1["ci_low"] <= f1["ci_high"] and 0 < f1["p"] <= 1
    assert "exact McNemar" in open(os.path.join(a, "report", "report.md")).read()
    # scores agree with what training wrote
    mine = json.load(open(os.path.join(a, "metrics.json")))
    assert dev["f1_macro"] == pytest.approx(mine["dev"]["f1_macro"])
    assert "tsne_dev.png" in open(os.path.join(a, "report", "report.md")).read()


def test_regression_report_fits_postprocessing_on_dev(reg_run, tmp_path):
    run = reg_run.copy(tmp_path / "r")  # evaluate writes postprocess.json and report/
    rep = evaluate.evaluate(run, tsne_points_max=50)
    chain = json.load(open(os.path.join(run, "postprocess.json")))
    assert chain == rep["postprocess"]
    for n in ("arousal", "valence"):
        dev = rep["scores"]["dev"]
        assert dev["postprocessed"][f"ccc_{n}"] >= dev["raw"][f"ccc_{n}"] - 1e-12
        assert dev["postprocessed"][f"ccc_{n}"] == pytest.approx(chain[n]["dev_ccc"])
    # test scores: the dev-fitted chain applied to the test predictions, by hand
    from emobed_tf.model.emobed import load_model

    p = saved_predictions(run, "test")  # the run's target, video
    post = np.concatenate(postprocess.apply_chain(p.pred, chain, ["arousal", "valence"]))
    gold = np.concatenate(p.gold)
    assert rep["scores"]["test"]["postprocessed"]["ccc_valence"] == pytest.approx(
        ccc(gold[:, 1], post[:, 1]))
    assert rep["scores"]["test"]["raw"]["ccc_avec2016_arousal"] == pytest.approx(
        ccc(gold[:, 0], np.concatenate(p.pred)[:, 0], "avec2016"))
    assert os.path.isfile(os.path.join(run, "report", "predictions_dev.png"))
    assert load_model(os.path.join(run, "model.keras")).task == "regression"


def test_tsne_points_mark_modality_and_label():
    from emobed_tf.experiments.scoring import Predictions

    rng = np.random.default_rng(0)
    pa = Predictions("classification", [], np.arange(30) % 3, None,
                     embeddings=rng.normal(size=(30, 4)))
    pv = Predictions("classification", [], np.arange(20) % 3, None,
                     embeddings=rng.normal(size=(20, 4)) + 5)
    pts, labels, mods = evaluate.tsne_points({"audio": pa, "video": pv}, "classification",
                                       ["a", "b", "c"], 25, 0)
    assert pts.shape == (45, 2)
    assert (mods == "audio").sum() == 25 and (mods == "video").sum() == 20
    assert set(labels.tolist()) == {0, 1, 2}


def test_missing_run_is_reported(tmp_path, capsys):
    assert evaluate_main(["--run", str(tmp_path / "none")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_sweep_writes_curve_and_reuses_finished_runs(cls_data, tmp_path, capsys):
    from emobed_tf import sweep

    d, _, _ = cls_data
    args = ["--dataset", "custom", "--data-dir", d, "--out", str(tmp_path / "sw"), "--epochs", "1",
            "--encoder-units", "4", "--shared-units", "4", "--verbose", "0", "--param", "beta",
            "--values", "0,0.5"]
    assert sweep.main(args) == 0
    res = json.load(open(tmp_path / "sw" / "sweep.json"))
    assert [r["value"] for r in res["rows"]] == [0.0, 0.5]
    assert [r["mode"] for r in res["rows"]] == ["triplet", "triplet"]
    assert [r["beta"] for r in res["rows"]] == [0.0, 0.5] and res["rows"][1]["alpha"] == 0.0
    runs = [json.load(open(tmp_path / "sw" / f"beta={v}" / "metrics.json")) for v in ("0", "0.5")]
    assert [r["dev_f1_macro"] for r in res["rows"]] == [r["dev"]["f1_macro"] for r in runs]
    best = max(res["rows"], key=lambda r: r["dev_f1_macro"])["value"]
    assert res["best"]["f1_macro"] == best
    assert os.path.getsize(tmp_path / "sw" / "sweep.png") > 0
    capsys.readouterr()
    assert sweep.main(args) == 0  # second call reuses both runs
    assert capsys.readouterr().out.count("(reused)") == 2


def test_ablation_runner_table_with_significance(reg_data, tmp_path):
    """``compare`` trains one run per mode; here on one regression dimension (``--label-dims
    arousal``), which each run then predicts and scores alone."""
    from emobed_tf import compare

    d, _, _ = reg_data
    out = tmp_path / "abl"
    assert compare.main(["--dataset", "custom", "--data-dir", d, "--out", str(out), "--epochs",
                         "1", "--encoder-units", "4", "--shared-units", "4", "--encoder-layers",
                         "1", "--shared-layers", "1", "--verbose", "0",
                         "--modes", "classic,emobed", "--label-dims", "arousal"]) == 0
    table = json.load(open(out / "comparison.json"))
    runs = {m: json.load(open(out / m / "metrics.json")) for m in ("classic", "emobed")}
    for m in runs.values():  # one dimension predicted, one scored
        assert "ccc_arousal" in m["dev"] and "ccc_valence" not in m["dev"]
    from emobed_tf.model.emobed import load_model

    assert load_model(str(out / "classic" / "model.keras")).num_outputs == 1
    row = table["rows"]["emobed"]
    assert row["test"]["ccc_arousal"] == runs["emobed"]["test"]["ccc_arousal"]
    # regression on one test set: no paired test, and the report says why
    assert row["vs_baseline"]["test"]["test"] == "none"
    md = open(out / "comparison.md").read()
    assert "| classic | 0 | 0 |" in md and "no paired test on one test set" in md
    assert compare.main(["--dataset", "custom", "--data-dir", d, "--out", str(out),
                         "--modes", "classic,bogus"]) == 2
