"""``lrpt serve``: many trained prompts behind one frozen causal LM over HTTP.

:mod:`~lrpt.app.serve.store` (the prompt store on disk and the registry of loaded prompts),
:mod:`~lrpt.app.serve.engine` (the batch scheduler: mixed-prompt classification and
iteration-level batched generation on one model thread), :mod:`~lrpt.app.serve.api` (the HTTP
layer: FastAPI routes, auth, limits, errors), :mod:`~lrpt.app.serve.metrics` (Prometheus).
"""
