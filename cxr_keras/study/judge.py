"""Automatic judge (beyond the paper): a classifier two-sample test between real and generated images.

For every generator a small CNN learns real vs that generator on the study images at the study's own
resolution, with stratified k-fold, so every study image receives exactly one held-out judgement.
Reported per source: how many images it calls real (Table-1 shape), its held-out accuracy with a 95 %
interval, and the Fréchet Radiomic Distance (``study.frd``). The judge is checked before it is
believed (``study.controls``): it must find nothing between two halves of the real images and must
catch blurred and box-only real images; when a control fails the report calls its Table 1 inconclusive.
It is an automatic judge, not a radiologist: it stands in for readers in demos only.
"""
from __future__ import annotations

import json
import math
import os
import random
from fractions import Fraction
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from cxr_keras.config import StudyConfig
from cxr_keras.data.images import load_gray
from cxr_keras.io_utils import atomic_write_text
from cxr_keras.study import controls as ctl
from cxr_keras.study.layout import REAL, StudyError, load_key, load_study, paths
from cxr_keras.study.score import _fmt, score_judgements, table_rows

LABEL = "automatic judge, not a radiologist"
PLATEAU_TOL = 1e-3  # an epoch that lowers the mean training loss by less than this does not count
FIT_LOSS = 0.01  # mean training loss at which the judge separates its training images: trained enough
CONTROL_SEED = 7919  # offset of the controls' seed from the study's (halves, folds)
MAX_LAYERS = 5  # strided convolutions: 224 → 7 before global pooling


def to_inputs(images: Sequence[np.ndarray], size: int) -> np.ndarray:
    """uint8 2-D images as float32 [N, size, size, 1] in [-1, 1] (area-resized when needed)."""
    out = np.empty((len(images), size, size, 1), np.float32)
    for i, img in enumerate(images):
        if img.shape != (size, size):
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
        out[i, :, :, 0] = img.astype(np.float32) / 127.5 - 1.0
    return out


def load_images(study_dir: os.PathLike, ids: Sequence[str], size: int) -> np.ndarray:
    """Study images as float32 [N, size, size, 1] in [-1, 1]."""
    p = paths(study_dir)
    return to_inputs([load_gray(p.image(i)) for i in ids], size)


def judge_size(cfg: StudyConfig, study: Dict) -> int:
    """The judge's input side: ``judge_image_size``, or (0) the study's own image size."""
    return int(cfg.judge_image_size or study["image_size"])


def stratified_folds(labels: Sequence[int], k: int, seed: int) -> np.ndarray:
    """Fold index per item: each class shuffled (seeded) and dealt round-robin over k folds."""
    labels = np.asarray(labels)
    folds = np.empty(len(labels), np.int64)
    rng = random.Random(seed)
    offset = 0
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c).tolist()
        rng.shuffle(idx)
        for j, i in enumerate(idx):
            folds[i] = (j + offset) % k
        offset += len(idx)  # continue dealing where the last class stopped: balanced fold sizes
    return folds


def build_classifier(image_size: int, filters: int = 8):
    """Strided 3×3 convolutions with batch norm down to about 8 px (at most five), global pooling, one
    logit (fake = 1). Batch norm (fast-moving statistics: few steps per fold) lets it find fine-grained
    differences such as a blur within a few epochs; without it the loss sits at chance for dozens."""
    import tensorflow as tf

    layers = tf.keras.layers
    n = max(1, min(MAX_LAYERS, int(math.log2(max(image_size, 2) / 8)) + 1))
    stack = [layers.Input((image_size, image_size, 1))]
    for i in range(n):
        stack += [layers.Conv2D(filters * min(2 ** i, 4), 3, strides=2, padding="same", use_bias=False),
                  layers.BatchNormalization(momentum=0.8), layers.LeakyReLU(0.2)]
    return tf.keras.Sequential(stack + [layers.GlobalAveragePooling2D(), layers.Dense(1)], name="real_fake_judge")


class Judge:
    """One classifier whose train/predict steps are traced once and reused for every fold and test.

    Each fold starts from freshly drawn weights and a zeroed optimizer (``reset``); retracing a new
    model per fold would cost far more than the training itself at this size.
    """

    def __init__(self, image_size: int, filters: int = 8, learning_rate: float = 1e-3):
        import tensorflow as tf

        self.tf = tf
        self.model = build_classifier(image_size, filters)
        self.optimizer = tf.keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.model.trainable_variables)
        x_spec = tf.TensorSpec([None, image_size, image_size, 1], tf.float32)
        v_spec = tf.TensorSpec([None], tf.float32)
        model, opt = self.model, self.optimizer

        @tf.function(input_signature=[x_spec, v_spec, v_spec])
        def train_step(x, y, w):
            with tf.GradientTape() as tape:
                logits = model(x, training=True)[:, 0]
                loss = tf.reduce_sum(w * tf.nn.sigmoid_cross_entropy_with_logits(labels=y, logits=logits))
                loss = loss / tf.reduce_sum(w)
            grads = tape.gradient(loss, model.trainable_variables)
            opt.apply_gradients(zip(grads, model.trainable_variables))
            return loss

        @tf.function(input_signature=[x_spec])
        def predict(x):
            return model(x, training=False)[:, 0]

        self._train_step, self._predict = train_step, predict

    def reset(self, seed: int) -> None:
        tf = self.tf
        tf.keras.utils.set_random_seed(seed)
        for i, layer in enumerate(self.model.layers):  # Keras' initial values, kernels redrawn (seeded)
            if getattr(layer, "kernel", None) is not None:
                init = tf.keras.initializers.GlorotUniform(seed=seed * 100 + i)
                layer.kernel.assign(init(layer.kernel.shape))
            for name, value in (("bias", 0.0), ("beta", 0.0), ("gamma", 1.0), ("moving_mean", 0.0),
                                ("moving_variance", 1.0)):
                v = getattr(layer, name, None)
                if v is not None:
                    v.assign(tf.fill(v.shape, value))
        for v in self.optimizer.variables:
            v.assign(self.tf.zeros_like(v))

    def fit(self, x: np.ndarray, y: np.ndarray, max_epochs: int, batch_size: int, seed: int,
            patience: int = 5) -> Dict:
        """Class-balanced binary cross-entropy, reshuffled every epoch (seeded), until it converged (the
        mean training loss is below FIT_LOSS or has not improved for ``patience`` epochs) or
        ``max_epochs`` ran out."""
        counts = np.bincount(y, minlength=2).astype(np.float32)
        w = (len(y) / (2.0 * np.maximum(counts, 1)))[y].astype(np.float32)
        rng = np.random.default_rng(seed)
        yf = y.astype(np.float32)
        best, stale, loss = math.inf, 0, math.nan
        for epoch in range(1, max_epochs + 1):
            idx = rng.permutation(len(y))
            total = 0.0
            for s in range(0, len(idx), batch_size):
                b = idx[s:s + batch_size]
                total += float(self._train_step(x[b], yf[b], w[b])) * len(b)
            loss = total / len(y)
            best, stale = (loss, 0) if loss < best - PLATEAU_TOL else (best, stale + 1)
            if stale >= patience or loss < FIT_LOSS:
                return {"epochs": epoch, "loss": loss, "converged": True}
        return {"epochs": max_epochs, "loss": loss, "converged": False}

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([self._predict(x[s:s + 256]).numpy() for s in range(0, len(x), 256)])


def cross_validated_scores(x: np.ndarray, y: np.ndarray, cfg: StudyConfig, seed: int,
                           judge: Optional[Judge] = None,
                           folds: Optional[np.ndarray] = None) -> Tuple[np.ndarray, int, List[Dict]]:
    """Out-of-fold logits (fake > 0) for every item; returns (logits, folds used, one fit record per fold)."""
    judge = judge or Judge(x.shape[1], cfg.judge_filters)
    if folds is None:
        k = max(2, min(cfg.judge_folds, int(np.bincount(y, minlength=2).min())))
        folds = stratified_folds(y, k, seed)
    k = int(folds.max()) + 1
    logits = np.zeros(len(y), np.float32)
    fits = []
    for fold in range(k):
        train, test = folds != fold, folds == fold
        judge.reset(seed * 1000 + fold)
        fits.append(judge.fit(x[train], y[train], cfg.judge_epochs, cfg.judge_batch_size, seed * 1000 + fold,
                              cfg.judge_patience))
        logits[test] = judge.predict(x[test])
    return logits, k, fits


def binomial_p_value(correct: int, n: int) -> float:
    """One-sided P(X >= correct) for X ~ Binomial(n, 1/2): could chance do this well?"""
    if n == 0:
        return 1.0
    return min(1.0, float(Fraction(sum(math.comb(n, i) for i in range(max(correct, 0), n + 1)), 2 ** n)))


def summarize(y: np.ndarray, logits: np.ndarray, k: int, fits: Sequence[Dict]) -> Dict:
    """Held-out accuracy (95 % Clopper–Pearson interval), balanced accuracy, p vs chance, convergence."""
    fake = logits > 0
    correct, n = int(np.sum(fake == (y == 1))), len(y)
    lo, hi = ctl.clopper_pearson(correct, n)
    tpr, tnr = float(np.mean(fake[y == 1])), float(np.mean(~fake[y == 0]))
    return {"n": n, "correct": correct, "accuracy": correct / n, "ci95": [lo, hi],
            "balanced_accuracy": (tpr + tnr) / 2, "p_value": binomial_p_value(correct, n), "folds": k,
            "epochs": [f["epochs"] for f in fits], "converged_folds": sum(f["converged"] for f in fits),
            "final_loss": [round(f["loss"], 4) for f in fits]}


def judge_generators(study_dir, study, key, real_ids, real_x, judge, cfg) -> Tuple[Dict, Dict, List[str]]:
    """Real vs each generator: (Table-1 judgements, per-source summaries, notes)."""
    judgements: Dict[str, Dict[str, str]] = {}
    per_source: Dict[str, Dict] = {}
    notes: List[str] = []
    for gi, gen in enumerate(s for s in study["sources"] if s != REAL):
        gen_ids = [i for i in study["order"] if key[i]["source"] == gen]
        if len(gen_ids) < 2:
            notes.append(f"{gen}: only {len(gen_ids)} image(s), not judged")
            continue
        x = np.concatenate([real_x, load_images(study_dir, gen_ids, real_x.shape[1])])
        y = np.array([0] * len(real_ids) + [1] * len(gen_ids), np.int64)
        logits, k, fits = cross_validated_scores(x, y, cfg, cfg.seed + gi, judge)
        fake = logits > 0
        judgements[f"judge vs {gen}"] = {i: ("fake" if f else "real") for i, f in zip(real_ids + gen_ids, fake)}
        per_source[gen] = {"judge": f"judge vs {gen}", "n_real": len(real_ids), "n_generated": len(gen_ids),
                           "generated_judged_real": int(np.sum(~fake[y == 1])),
                           "real_judged_real": int(np.sum(~fake[y == 0])), **summarize(y, logits, k, fits)}
    return judgements, per_source, notes


def real_halves(real_ids: Sequence[str], key: Dict, real_x: np.ndarray,
                cfg: StudyConfig) -> Tuple[List[str], List[str]]:
    """The two disjoint halves of the real images for the real-vs-real control (and the FRD floor):
    per finding, neighbours in mean brightness split by a coin flip (so a chance imbalance of 30 images
    is not what the judge finds), drawn over the images' origins (a rebuilt study, with new random ids,
    gets the same halves)."""
    origin = {i: json.dumps(key[i].get("origin", {}), sort_keys=True) for i in real_ids}
    brightness = {i: float(real_x[j].mean()) for j, i in enumerate(real_ids)}
    return ctl.split_halves(real_ids, {i: key[i]["finding"] for i in real_ids}, cfg.seed + CONTROL_SEED,
                            origin, brightness)


def run_controls(study, key, real_ids, real_x, halves, judge, cfg) -> Tuple[Dict, List[str]]:
    """Real vs real (two halves) and real vs degraded real (blurred, box only), each with its verdict."""
    out: Dict[str, Dict] = {}
    seed = cfg.seed + CONTROL_SEED
    pos = {i: j for j, i in enumerate(real_ids)}
    a, b = halves
    if min(len(a), len(b)) >= 2:
        x = real_x[[pos[i] for i in a + b]]
        y = np.array([0] * len(a) + [1] * len(b), np.int64)
        s = summarize(y, *cross_validated_scores(x, y, cfg, seed, judge))
        out[ctl.REAL_VS_REAL] = {**s, "passed": s["ci95"][0] <= 0.5 <= s["ci95"][1], "halves": [len(a), len(b)]}
    sets, notes = ctl.degraded_sets(real_ids, key, study, cfg.judge_blur_sigma)
    for kind, (ids, images) in sets.items():
        if len(ids) < 2:
            continue
        x = np.concatenate([real_x[[pos[i] for i in ids]], to_inputs(images, real_x.shape[1])])
        y = np.array([0] * len(ids) + [1] * len(ids), np.int64)
        folds = ctl.paired_folds(len(ids), max(2, min(cfg.judge_folds, len(ids))), seed)
        s = summarize(y, *cross_validated_scores(x, y, cfg, seed, judge, folds))
        out[kind] = {**s, "passed": s["accuracy"] >= cfg.judge_control_min_accuracy, "pairs": len(ids)}
    return out, notes


def run_frd(study_dir, study, key, real_ids, halves, cfg) -> Dict:
    """FRD of every generator's study images against the real ones, and between the two real halves."""
    from cxr_keras.study import frd

    if not cfg.judge_frd:
        return {"available": False, "message": "switched off in this preset (judge_frd)"}
    image = paths(study_dir).image
    sets = {s: [image(i) for i in study["order"] if key[i]["source"] == s] for s in study["sources"] if s != REAL}
    a, b = halves
    workers = min(2, os.cpu_count() or 1)
    try:
        table = frd.frd_table([image(i) for i in real_ids], sets, workers)
        halves = frd.frd_table([image(i) for i in a], {"real halves": [image(i) for i in b]}, workers)
        table["real_halves"] = halves["distances"]["real halves"]
        table["errors"].update(halves["errors"])
    except frd.FRDUnavailable as exc:
        return {"available": False, "message": str(exc)}
    return {"available": True, **table}


def inconclusive_reasons(controls: Dict, cfg: StudyConfig) -> List[str]:
    """Why the judge's Table 1 cannot be believed, in words; empty when both controls passed."""
    reasons = []
    rr = controls.get(ctl.REAL_VS_REAL)
    if rr is None:
        reasons.append("the real-vs-real control could not run (fewer than 4 real images)")
    elif not rr["passed"]:
        reasons.append(f"real vs real: accuracy {rr['accuracy']:.2f} with 95 % interval {rr['ci95'][0]:.2f}–"
                       f"{rr['ci95'][1]:.2f}, which excludes 0.50: the judge finds a difference between two halves "
                       "of the same real images, so the differences it reports may be noise it has fitted")
    what = {ctl.BLURRED: f"the same images blurred with σ = {cfg.judge_blur_sigma:g} px at 256",
            ctl.BOX_ONLY: "the generator's input x (box only, black elsewhere)"}
    for kind, text in what.items():
        c = controls.get(kind)
        if c is None:
            reasons.append(f"the control against {text} could not run (no originals with what it needs)")
        elif not c["passed"]:
            reasons.append(f"real vs {text}: accuracy {c['accuracy']:.2f}, below "
                           f"{cfg.judge_control_min_accuracy:.2f}: the judge misses an obvious degradation, so an "
                           "image it calls real may only be an image it cannot examine")
    return reasons


def run_auto_judge(study_dir: os.PathLike, cfg: StudyConfig = StudyConfig()) -> Dict:
    """Judge every generator of STUDY_DIR against the real images, run the controls; returns the report."""
    study = load_study(study_dir)
    key = load_key(study_dir)
    real_ids = [i for i in study["order"] if key[i]["source"] == REAL]
    if len(real_ids) < 2:
        raise StudyError(f"{paths(study_dir).root}: the automatic judge needs at least 2 real images")
    size = judge_size(cfg, study)
    real_x = load_images(study_dir, real_ids, size)
    halves = real_halves(real_ids, key, real_x, cfg)
    frd_result = run_frd(study_dir, study, key, real_ids, halves, cfg)  # before TensorFlow: it forks
    judge_model = Judge(size, cfg.judge_filters)
    judgements, per_source, notes = judge_generators(study_dir, study, key, real_ids, real_x, judge_model, cfg)
    controls, control_notes = run_controls(study, key, real_ids, real_x, halves, judge_model, cfg)
    reasons = inconclusive_reasons(controls, cfg)
    scored = score_judgements(key, judgements, study["findings"], study["sources"])
    return {
        "label": LABEL, "kind": "automatic judge (classifier two-sample test)",
        "config": {"image_size": size, "max_epochs": cfg.judge_epochs, "patience": cfg.judge_patience,
                   "folds": cfg.judge_folds, "filters": cfg.judge_filters, "seed": cfg.seed,
                   "blur_sigma_at_256": cfg.judge_blur_sigma,
                   "control_min_accuracy": cfg.judge_control_min_accuracy},
        "conclusive": not reasons, "inconclusive_reasons": reasons, "controls": controls,
        "per_source": per_source, "frd": frd_result, "notes": notes + control_notes, **scored,
    }


def _interval(s: Dict) -> str:
    return f"{s['ci95'][0]:.2f}–{s['ci95'][1]:.2f}"


def _controls_md(report: Dict) -> List[str]:
    cfg, controls = report["config"], report["controls"]
    lines = ["| Control | The judge must | Accuracy | 95 % interval | Result |", "|---|---|---|---|---|"]
    rows = [(ctl.REAL_VS_REAL, "real vs real (two disjoint halves{})", "not tell them apart (interval contains 0.50)"),
            (ctl.BLURRED, f"real vs the same images blurred, σ = {cfg['blur_sigma_at_256']:g} px at 256{{}}",
             f"catch them (accuracy ≥ {cfg['control_min_accuracy']:.2f})"),
            (ctl.BOX_ONLY, "real vs the generator's input x, box only{}",
             f"catch them (accuracy ≥ {cfg['control_min_accuracy']:.2f})")]
    for kind, what, must in rows:
        c = controls.get(kind)
        if c is None:
            lines.append(f"| {what.format('')} | {must} | n/a | n/a | not run |")
            continue
        size = f", {c['halves'][0]} + {c['halves'][1]}" if "halves" in c else f", {c['pairs']} pairs"
        lines.append(f"| {what.format(size)} | {must} | {_fmt(c['accuracy'])} | {_interval(c)} | "
                     f"{'passed' if c['passed'] else '**failed**'} |")
    return lines


def _frd_md(report: Dict) -> List[str]:
    f = report.get("frd") or {}
    if not f.get("available"):
        return [f"Not computed: {f.get('message', 'no result')}."]
    lines = [f"FRD {f['version']} ({f['package']}) of each source's study images against the real study "
             "images: radiomic features of the whole image, lower = closer (the log of a squared Fréchet "
             "distance, so it can be negative). "
             f"For scale, two halves of the real images are {_fmt(f.get('real_halves'))} apart "
             "(smaller sets, so a rough floor).", "", "| Source | FRD vs real |", "|---|---|"]
    lines += [f"| {s} | {_fmt(v)} |" for s, v in f["distances"].items()]
    lines += [f"- {s}: {e}" for s, e in f.get("errors", {}).items()]
    return lines


def markdown(report: Dict) -> str:
    """Table 1 of the automatic judge with its controls, verdict and FRD, clearly labelled as automatic."""
    judges, cfg = report["table"]["readers"], report["config"]
    rows = table_rows(report["table"], "\\|", only_answered=True)
    lines = [f"# Table 1, {report['label']}", "",
             f"A small CNN per generator learns to tell real from generated study images ({cfg['image_size']}×"
             f"{cfg['image_size']}, until its training loss stops falling, at most {cfg['max_epochs']} epochs; "
             "stratified k-fold, so every image is judged once, held out). Before its Table 1 is read, the same "
             "judge faces two controls.", ""]
    if report["conclusive"]:
        lines.append("**Verdict: the judge passed its controls.** It cannot tell two halves of the real images "
                     "apart and it catches degraded real images, so its counts below are a fair two-sample test.")
    else:
        lines.append("**Verdict: inconclusive.** The judge failed or could not run its controls, so its Table 1 "
                     "below says nothing about how real the generated images look:")
        lines += [""] + [f"- {r}." for r in report["inconclusive_reasons"]]
    lines += ["", "## Controls", "", *_controls_md(report), "",
              "## Table 1" + ("" if report["conclusive"] else " (inconclusive)"), "",
              "Cells: images judged real / images shown; the real column lists one count per judge ("
              + " \\| ".join(judges) + ").", "",
              "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    lines += ["", "## Per generator (50 % accuracy = indistinguishable)", "",
              "| Source | Generated judged real | Accuracy | 95 % interval | Balanced accuracy | p (vs 50 %) | "
              "Folds converged | FRD vs real |", "|---|---|---|---|---|---|---|---|"]
    frd_values = (report.get("frd") or {}).get("distances", {})
    for gen, s in report["per_source"].items():
        lines.append(f"| {gen} | {s['generated_judged_real']} of {s['n_generated']} | {_fmt(s['accuracy'])} | "
                     f"{_interval(s)} | {_fmt(s['balanced_accuracy'])} | {s['p_value']:.3g} | "
                     f"{s['converged_folds']} of {s['folds']} | {_fmt(frd_values.get(gen))} |")
    lines += ["", "## Fréchet Radiomic Distance", "", *_frd_md(report)]
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def write_auto_judge(study_dir: os.PathLike, cfg: StudyConfig = StudyConfig()) -> Dict:
    """Run the judge and write STUDY_DIR/auto_judge.json and auto_judge.md."""
    report = run_auto_judge(study_dir, cfg)
    p = paths(study_dir)
    atomic_write_text(p.auto_judge_json, json.dumps(report, indent=1))
    atomic_write_text(p.auto_judge_md, markdown(report))
    return report
