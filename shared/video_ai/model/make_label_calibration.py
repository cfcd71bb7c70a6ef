"""Fit label_calibration.json: the temperature of the labels' confidences, on held-out labelled photographs (by hand).

    fetch github:VeriSilicon/acuity-dataset (commit aded2e9f22cd8fe0745aa57356c68cb95457aad9), then
    git -C <its git dir> archive aded2e9f ILSVRC2012_VAL_SET | tar -x -C /tmp/acuity
    python -m video_ai.model.make_label_calibration /tmp/acuity/ILSVRC2012_VAL_SET [--check] \
        [--cross-check DIR_OF_wnid_name.JPEG] [--int8]

Inputs: 1,300 photographs of the ILSVRC2012 *validation* set (`ILSVRC2012_val_*.JPEG`, never seen in training; the
repository has prescaled them to 227x227) with their class in `dataset.txt` (the standard ILSVRC2012 ground truth).
The repository states no licence; the photographs are ImageNet's (ImageNet's terms of access: non-commercial
research and education; each photograph's copyright stays with its owner), so none ships here: only the fitted
number, aggregate figures, and a digest of the list of (file, sha256, class) this script read.
Each photograph is scored as the analyzer scores a frame (analyzers/labels.py): an aspect-keeping copy whose short side
is 224, its centre square crop and the whole image squashed to 224x224, each class at its best input.
Split: a file whose name's sha256 starts with an even hex digit fits T, the rest (~half) is held out and reports ECE
and NLL before and after. `--cross-check DIR` also reports them on another labelled set whose file names start with
the WordNet id (e.g. github:EliSchwartz/imagenet-sample-images, one photograph per class at its own aspect ratio,
which exercises the crop; it may hold training photographs), as they are and cut to 16:9 like a video frame.
`--check` recomputes and fails if the file differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from video_ai.model.label_calibration import (
    CALIBRATION_FILE,
    best_view_probabilities,
    expected_calibration_error,
    fit_temperature,
    frame_probabilities,
    negative_log_likelihood,
    reliability_bins,
)

OUT = Path(__file__).with_name(CALIBRATION_FILE)
SOURCE = {
    "repository": "github.com/VeriSilicon/acuity-dataset",
    "commit": "aded2e9f22cd8fe0745aa57356c68cb95457aad9",
    "path": "ILSVRC2012_VAL_SET (data/*.JPEG, dataset.txt)",
    "what": "1,300 ILSVRC2012 validation photographs, prescaled to 227x227, with their ground-truth class",
    "licence": "none stated; ImageNet photographs (ImageNet terms of access; copyright of their owners): not shipped, "
               "only the fitted temperature and aggregate figures",
}


def views(path: Path, wide: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The analyzer's two inputs for a photograph: the centre square crop of its short-side-224 copy, and the whole.
    `wide`: first cut the photograph to 16:9 around its centre, as a video frame filled by it."""
    import cv2

    from video_ai.analyzers.labels import square_crops

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{path}: not an image")
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    if wide and w / h > 16 / 9:
        cut = round(h * 16 / 9)
        rgb = rgb[:, (w - cut) // 2 : (w - cut) // 2 + cut]
    elif wide:
        cut = round(w * 9 / 16)
        rgb = rgb[(h - cut) // 2 : (h - cut) // 2 + cut]
    h, w = rgb.shape[:2]
    scale = 224 / min(h, w)
    detail = cv2.resize(rgb, (max(224, round(w * scale)), max(224, round(h * scale))), interpolation=cv2.INTER_AREA)
    return square_crops(detail, "centre")[0], cv2.resize(detail, (224, 224), interpolation=cv2.INTER_AREA)


def score(paths: list[Path], precision: str = "fp32", wide: bool = False) -> list[np.ndarray]:
    """(crop logits, whole logits) of the built-in model (fp32, or int8 quantised as `ensure_model` does), one row
    per path."""
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.model import ensure_model
    from video_ai.settings import ModelSettings

    with tempfile.TemporaryDirectory() as tmp:
        settings = ModelSettings(threads=0, precision=precision, cache_dir=Path(tmp))
        embedder = OnnxEmbedder(settings, ensure_model(settings, Path(tmp)))
        crops, wholes = [], []
        for start in range(0, len(paths), 64):
            pairs = [views(p, wide) for p in paths[start : start + 64]]
            crops.append(embedder.logits([c for c, _ in pairs]))
            wholes.append(embedder.logits([w for _, w in pairs]))
    return [np.concatenate(crops), np.concatenate(wholes)]


def reliability(logits: list[np.ndarray], truth: np.ndarray, temperature: float) -> dict[str, Any]:
    raw, calibrated = frame_probabilities(logits, 1.0), frame_probabilities(logits, temperature)
    # NLL needs a distribution: the most confident view's, whose top label is the reported one.
    nll_raw = negative_log_likelihood(best_view_probabilities(logits, 1.0), truth)
    nll_calibrated = negative_log_likelihood(best_view_probabilities(logits, temperature), truth)
    return {
        "images": len(truth),
        "top1": round(float((raw.argmax(axis=1) == truth).mean()), 4),
        "ece_raw": round(expected_calibration_error(raw, truth), 4),
        "ece_calibrated": round(expected_calibration_error(calibrated, truth), 4),
        "nll_raw": round(nll_raw, 4),
        "nll_calibrated": round(nll_calibrated, 4),
        "mean_confidence_raw": round(float(raw.max(axis=1).mean()), 4),
        "mean_confidence_calibrated": round(float(calibrated.max(axis=1).mean()), 4),
        "bins_raw": reliability_bins(raw, truth),
        "bins_calibrated": reliability_bins(calibrated, truth),
    }


def held_out(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest()[0], 16) % 2 == 1


def read_validation(root: Path) -> tuple[list[Path], np.ndarray, str]:
    """The set's files and classes (dataset.txt: `./data/NAME.JPEG, CLASS`), and a digest of (name, sha256, class)."""
    paths, classes, lines = [], [], []
    for line in (root / "dataset.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rel, label = (part.strip() for part in line.split(",")[:2])
        path = root / rel
        paths.append(path)
        classes.append(int(label))
        lines.append(f"{path.name} {hashlib.sha256(path.read_bytes()).hexdigest()} {label}\n")
    return paths, np.asarray(classes), hashlib.sha256("".join(lines).encode()).hexdigest()


def crop_gate(logits: list[np.ndarray], truth: np.ndarray, temperature: float) -> dict[str, Any]:
    """What `crop_below` costs: the analyzer skips the crop where the whole image's top label is that confident."""
    from video_ai.model.label_calibration import softmax
    from video_ai.settings import LabelSettings

    threshold = LabelSettings().crop_below
    both = frame_probabilities(logits, temperature)
    whole = softmax(logits[1].astype(np.float64), temperature)
    skipped = whole.max(axis=1) >= threshold
    gated = np.where(skipped[:, None], whole, both)
    return {
        "crop_below": threshold,
        "crop_skipped": round(float(skipped.mean()), 4),
        "top1_with_crop": round(float((both.argmax(axis=1) == truth).mean()), 4),
        "top1_gated": round(float((gated.argmax(axis=1) == truth).mean()), 4),
        "same_top1_where_skipped": round(float((both[skipped].argmax(axis=1) == whole[skipped].argmax(axis=1))
                                               .mean()), 4),
        "ece_gated": round(expected_calibration_error(gated, truth), 4),
    }


def cross_check(directory: Path, temperature: float) -> dict[str, Any]:
    from video_ai.model.wordnet import class_words

    index = {class_words(i).wnid: i for i in range(1000)}
    paths = sorted(p for p in directory.iterdir() if p.name.split("_")[0] in index)
    truth = np.asarray([index[p.name.split("_")[0]] for p in paths])
    logits = score(paths)
    wide = score(paths, wide=True)
    return {**reliability(logits, truth, temperature), **crop_gate(logits, truth, temperature),
            "as_16_9_frames": {**reliability(wide, truth, temperature), **crop_gate(wide, truth, temperature)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("validation", type=Path, help="the ILSVRC2012_VAL_SET folder")
    parser.add_argument("--cross-check", type=Path, metavar="DIR")
    parser.add_argument("--check", action="store_true", help="recompute; exit 1 if the shipped file differs")
    parser.add_argument("--int8", action="store_true",
                        help="report only: the int8 model's own temperature, and its held-out figures with the "
                        "shipped (fp32) one, which int8 uses too")
    args = parser.parse_args()
    paths, truth, digest = read_validation(args.validation)
    if args.int8:
        logits = score(paths, "int8")
        fit = np.asarray([not held_out(p.name) for p in paths])
        shipped = json.loads(OUT.read_text(encoding="utf-8"))["temperature"]
        own = round(fit_temperature([v[fit] for v in logits], truth[fit]), 4)
        report = {"int8_own_temperature": own, "held_out_with_shipped_temperature": reliability(
            [v[~fit] for v in logits], truth[~fit], shipped)}
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    logits = score(paths)
    fit = np.asarray([not held_out(p.name) for p in paths])
    temperature = round(fit_temperature([v[fit] for v in logits], truth[fit]), 4)
    out: dict[str, Any] = {
        "about": "Temperature of the labels' confidences (video_ai.model.label_calibration); generated by "
                 "make_label_calibration.py, see its docstring",
        "model": {"name": "efficientnet-lite0", "version": "imagenet-1", "precision": "fp32"},
        "temperature": temperature,
        "inputs": {**SOURCE, "images": len(paths), "list_sha256": digest,
                   "views": "centre square crop of the short-side-224 copy + the whole image at 224x224; each class "
                            "at its best view"},
        "split": {"rule": "sha256(file name) first hex digit odd: held out", "fit": int(fit.sum()),
                  "held_out": int((~fit).sum())},
        "held_out": reliability([v[~fit] for v in logits], truth[~fit], temperature),
    }
    if args.cross_check:
        out["cross_check"] = {"set": "github.com/EliSchwartz/imagenet-sample-images "
                                     "(bc69043e2862758a1906c6a24a792bb28c6bb2ff; 1,000 photographs, one per class, "
                                     "own aspect ratios; train or validation not stated)",
                              **cross_check(args.cross_check, temperature)}
    text = json.dumps(out, indent=2) + "\n"
    sys.stdout.write(text)
    if args.check:
        shipped = json.loads(OUT.read_text(encoding="utf-8"))
        if shipped["temperature"] != out["temperature"] or shipped["inputs"]["list_sha256"] != digest:
            sys.exit(f"{OUT.name} differs: shipped T={shipped['temperature']}, recomputed T={temperature}")
        sys.stderr.write(f"{OUT.name}: matches (T={temperature})\n")
        return
    OUT.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
