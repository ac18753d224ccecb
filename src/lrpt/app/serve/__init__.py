"""``lrpt serve``: many trained prompts behind one frozen causal LM over HTTP.

:mod:`~lrpt.app.serve.config` (every option, declared once), :mod:`~lrpt.app.serve.store` (the
prompt store on disk and the registry of loaded prompts), :mod:`~lrpt.app.serve.jobs` and
:mod:`~lrpt.app.serve.errors` (what the HTTP layer and an engine say to each other),
:mod:`~lrpt.app.serve.engine` (the batch scheduler: mixed-prompt classification and
iteration-level batched generation on one model thread), :mod:`~lrpt.app.serve.api` (the HTTP
layer: FastAPI routes and auth) with :mod:`~lrpt.app.serve.schemas` (request bodies),
:mod:`~lrpt.app.serve.httperrors` (errors as HTTP) and :mod:`~lrpt.app.serve.guard` (body
limits, request metrics), :mod:`~lrpt.app.serve.metrics` (Prometheus),
:mod:`~lrpt.app.serve.server` (start-up).
"""
