"""The training pipeline: one module per stage, each runnable as `python -m training.<stage>`
and wired together by dvc.yaml."""
