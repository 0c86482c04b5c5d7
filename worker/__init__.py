"""Celery workers: they own the model, batch bulk work and answer /predict.

Importing the package, `worker.celery_app`, `worker.healthcheck` or `worker.reload` never
imports torch; the model code loads inside each model-owning process.
"""
