"""Audit stage: the training photos most likely to be mislabelled or not a cat or dog at all.

About a quarter of the errors left on PetImages are bad data, not model errors: a cat filed
under Dog/, an "Adopted" banner, a drawing, a cat and a dog in one photo. This stage finds the
suspects for a person to review:

- **label issues**, by confident learning (cleanlab): out-of-fold probabilities from a
  logistic regression on the frozen backbone features the train stage kept
  (`models/train_features.pt`), so no photo is judged by a model that saw its label;
- **junk**, by the open-set signal (common.ml.open_set): photos whose pet probability falls
  below the checkpoint's threshold.

It writes `reports/label_audit/suspects.csv` (worst first), a contact sheet of the top
suspects and `metrics/audit.json`. It changes nothing: a person copies the rows they agree
with into `data/label_overrides.csv` (training.overrides), which ingest applies on the next
`dvc repro`. Run as `python -m training.audit`.
"""

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common.labels import CLASSES
from common.logging_setup import configure_logging
from common.ml.checkpoint import load_checkpoint
from common.ml.open_set import pet_probability
from training.artifacts import AUDIT_DIR, AUDIT_METRICS, CHECKPOINT, TRAIN_FEATURES
from training.dataset import load_image
from training.manifest import write_csv, write_json

log = logging.getLogger(__name__)

SUSPECT_COLUMNS = ("rank", "issue", "path", "sha256", "label", "suggested", "p_label", "p_pet")
CONTACT_SHEET_SIZE = 48  # suspects shown on the contact sheet
_FOLDS = 5


@dataclass(frozen=True)
class Suspect:
    issue: str  # "label", "not a pet" or "label, not a pet"
    path: str
    sha256: str
    label: str
    suggested: str  # the label the out-of-fold model prefers
    p_label: float  # out-of-fold probability of the given label
    p_pet: float | None

    @property
    def severity(self) -> float:
        """Lower is worse: the given label's probability, or the pet probability for junk."""
        return min(self.p_label if "label" in self.issue else 1.0, self.p_pet or 1.0)


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """(N, C) class probabilities of each photo from a model fitted on the other folds."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    folds = StratifiedKFold(_FOLDS, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(model, features, labels, cv=folds, method="predict_proba"))


def find_suspects(
    saved: dict[str, Any], pets: np.ndarray | None, pet_threshold: float | None, seed: int = 42
) -> list[Suspect]:
    """Every training photo cleanlab finds mislabelled or the open-set signal calls junk,
    worst first."""
    from cleanlab.filter import find_label_issues

    features = saved["features"].numpy()
    labels = saved["labels"].numpy()
    probabilities = out_of_fold_probabilities(features, labels, seed)
    # n_jobs=1: cleanlab's default forks a process pool, which can hang when the caller has
    # threads (a test runner, a DVC stage's progress bars); one process is fast enough here.
    issues = find_label_issues(labels, probabilities, n_jobs=1)
    mislabelled = set(issues.nonzero()[0].tolist())
    junk: set[int] = set()
    if pets is not None and pet_threshold is not None:
        junk = set(np.nonzero(pets < pet_threshold)[0].tolist())
    suspects = []
    for i in sorted(mislabelled | junk):
        issue = ", ".join(
            name for name, found in (("label", i in mislabelled), ("not a pet", i in junk)) if found
        )
        suspects.append(
            Suspect(
                issue=issue,
                path=saved["paths"][i],
                sha256=saved["sha256"][i],
                label=CLASSES[labels[i]],
                suggested=CLASSES[int(probabilities[i].argmax())],
                p_label=float(probabilities[i, labels[i]]),
                p_pet=None if pets is None else float(pets[i]),
            )
        )
    return sorted(suspects, key=lambda s: s.severity)


def write_contact_sheet(suspects: list[Suspect], path: Path, columns: int = 8) -> None:
    """A grid of the worst suspects, each captioned with its rank, issue and labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = suspects[:CONTACT_SHEET_SIZE]
    rows = max(1, math.ceil(len(shown) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 2.0, rows * 2.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for rank, (suspect, ax) in enumerate(zip(shown, axes.flat, strict=False), start=1):
        ax.imshow(load_image(Path(suspect.path)))
        caption = f"#{rank} {suspect.label}"
        if "label" in suspect.issue:
            caption += f" -> {suspect.suggested}?"
        if "not a pet" in suspect.issue:
            caption += " / not a pet?"
        ax.set_title(f"{caption}\n{Path(suspect.path).name}", fontsize=7)
    if not shown:
        axes.flat[0].text(0.5, 0.5, "no suspects", ha="center", va="center")
    fig.suptitle("Label audit: review these, then write data/label_overrides.csv", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    configure_logging(json_logs=False)
    saved = torch.load(TRAIN_FEATURES, weights_only=True)
    suspects: list[Suspect] = []
    if len(saved["labels"]) == 0:
        log.info("the model was trained end to end, with no frozen features: nothing to audit")
    else:
        model, config, _ = load_checkpoint(CHECKPOINT)
        head = getattr(model, "imagenet_head", None)
        pets = None
        if head is not None:
            with torch.inference_mode():
                pets = pet_probability(head(saved["features"])).numpy()
        suspects = find_suspects(saved, pets, config.pet_threshold)
    rows = [{"rank": rank, **vars(s)} for rank, s in enumerate(suspects, start=1)]
    write_csv(AUDIT_DIR / "suspects.csv", SUSPECT_COLUMNS, rows)
    write_contact_sheet(suspects, AUDIT_DIR / "contact_sheet.png")
    counts = {
        "audited": len(saved["labels"]),
        "suspects": len(suspects),
        "label_issues": sum("label" in s.issue for s in suspects),
        "not_a_pet": sum("not a pet" in s.issue for s in suspects),
    }
    write_json(AUDIT_METRICS, counts)
    log.info("label audit: %s; see %s", json.dumps(counts), AUDIT_DIR)


if __name__ == "__main__":
    main()
