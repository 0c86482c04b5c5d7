"""Where each pipeline stage reads and writes: the paths dvc.yaml names as deps and outs.

Stages are peers: a stage finds another stage's output here, never by importing that stage.
Paths are relative to the repository root, the working directory of every DVC stage.
"""

from pathlib import Path

LABEL_OVERRIDES = Path("data/label_overrides.csv")  # a person's review (git), read by ingest
RAW_DIR = Path("data/raw")  # ingest
VALIDATED_DIR = Path("data/validated")  # validate
QUARANTINE_DIR = Path("data/quarantine")  # validate
MANIFEST_NAME = "manifest.csv"
VALIDATED_MANIFEST = VALIDATED_DIR / MANIFEST_NAME
SPLITS_DIR = Path("data/splits")  # split

CHECKPOINT = Path("models/model.pt")  # train
RUN_FILE = Path("models/mlflow_run.json")  # train: the MLflow run evaluate and register resume
TRAIN_METRICS = Path("metrics/train.json")
TRAIN_HISTORY = Path("plots/train/history.csv")
TRAIN_CURVES = Path("plots/train/curves.png")

EVAL_METRICS = Path("metrics/eval.json")  # evaluate
EVAL_PLOTS_DIR = Path("plots/eval")

PROMOTION_FILE = Path("metrics/promotion.json")  # register

TRAIN_FEATURES = Path("models/train_features.pt")  # train: frozen features the audit reads
AUDIT_DIR = Path("reports/label_audit")  # audit: suspects.csv and contact_sheet.png
AUDIT_METRICS = Path("metrics/audit.json")
