"""The HTTP gateway: validates uploads, hands work to Celery workers through Redis and
reports jobs. It never imports torch (a test proves it); the app is `gateway.main:app`,
served by `python -m gateway`.
"""
