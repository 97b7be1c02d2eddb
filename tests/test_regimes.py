"""The regimes study's report: the paired analysis over fold means, Holm over the family,
the verdict rule, what is not run; against scipy and numbers computed here."""

import json

import numpy as np
import pytest
from scipy import stats

from benchmarks import dev_corpus, regimes


def _crossval_json(path, rng, gain):
    folds = [{"index": f, "test": [f"{f + 1:02d}"], "dev": [], "train": []} for f in range(24)]
    runs = {}
    for system, shift in (("classic", 0.0), ("joint", gain / 2), ("emobed", gain)):
        runs[system] = {f"fold{f}-seed{s}": {"f1_macro": 0.6 + 0.01 * f + shift
                                             + rng.normal(0, 0.01)}
                        for f in range(24) for s in range(3)}
    path.mkdir(parents=True)
    (path / "crossval.json").write_text(json.dumps({
        "keys": ["f1_macro"], "folds": folds, "seeds": [0, 1, 2], "runs": runs,
        "systems": {"probe": {"f1_macro_mean": 0.65}}}))
    return runs


def test_report_is_the_paired_analysis_over_fold_means_with_holm_and_verdicts(tmp_path):
    rng = np.random.default_rng(0)
    made = {aux: _crossval_json(tmp_path / "regimes" / "scarcity_k1" / aux, rng, gain)
            for aux, gain in (("faces", 0.02), ("video_au", 0.0))}
    section = regimes.report(str(tmp_path))
    assert list(section["results"]) == ["scarcity_k1"]
    assert "paired_au" in section["not_run"] and "scarcity_k2" in section["not_run"]
    ps = []
    for aux, runs in made.items():
        row = section["results"]["scarcity_k1"]["auxiliaries"][aux]
        assert len(row["per_run"]) == 3 * 72 and row["probe"] == 0.65
        for system in ("joint", "emobed"):
            d = [np.mean([runs[system][f"fold{f}-seed{s}"]["f1_macro"]
                          - runs["classic"][f"fold{f}-seed{s}"]["f1_macro"] for s in range(3)])
                 for f in range(24)]
            t = row["systems"][system]
            assert (t["n_folds"], t["n_seeds"]) == (24, 3)
            assert t["mean_diff"] == pytest.approx(np.mean(d))
            assert t["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
            lo, hi = stats.t.interval(0.95, 23, loc=np.mean(d), scale=stats.sem(d))
            assert (t["ci_low"], t["ci_high"]) == pytest.approx((lo, hi))
            ps.append(t["p_wilcoxon"])
    assert section["holm_family"] == 4
    holm = [t["p_holm"] for aux in made for t in
            section["results"]["scarcity_k1"]["auxiliaries"][aux]["systems"].values()]
    # Holm by hand: sorted p x (4, 3, 2, 1), running maximum, capped at 1
    order = np.argsort(ps)
    want, running = [0.0] * 4, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (4 - rank) * ps[i]))
        want[i] = running
    assert holm == pytest.approx(want)
    faces = section["results"]["scarcity_k1"]["auxiliaries"]["faces"]["systems"]["emobed"]
    assert faces["verdict"] == "gain"  # +2 points, sd .01 over 24 folds
    au = section["results"]["scarcity_k1"]["auxiliaries"]["video_au"]["systems"]["emobed"]
    assert au["verdict"] == "equivalent"  # 0 points, interval well inside +-1
    md = regimes.markdown(section)
    assert "| scarcity_k1 | faces | " in md and "Not run yet" in md


def test_every_regime_is_declared_with_what_it_needs(tmp_path):
    for name, r in dev_corpus.REGIMES.items():
        argv = regimes.study_argv(str(tmp_path), name, next(iter(r["aux"])))
        assert argv[argv.index("--folds") + 1] == "loso"
        assert argv[argv.index("--seeds") + 1] == "0,1,2"
        assert argv[argv.index("--modes") + 1] == "classic,joint,emobed"
        assert argv[argv.index("--target") + 1] == r["modality"]
    assert regimes.missing(str(tmp_path), "scarcity_k1").startswith("the data folder")
    assert "not built" in regimes.missing(str(tmp_path), "paired_au")
