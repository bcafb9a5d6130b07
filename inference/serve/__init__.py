"""``khabar serve``: the classifier and summarizer over HTTP, with a Persian web page.

An optional part of khabar (``pip install 'khabar[serve]'``: FastAPI and uvicorn). The pieces:

- :mod:`inference.serve.app` builds the FastAPI application (``create_app``): the JSON API under
  ``/v1``, health checks and the page at ``/``;
- :mod:`inference.serve.batcher` gathers concurrent requests into one model batch and runs the
  models in a worker thread, so the server keeps answering while they work;
- :mod:`inference.serve.models` holds the loaded models and turns a batch of texts into results
  or per-item errors;
- :mod:`inference.serve.schemas` defines the request and response bodies and checks each item
  as ``khabar predict`` checks a row;
- :mod:`inference.serve.cli` adds the ``khabar serve`` command.

Nothing here is imported by the rest of khabar, so the core install does not need FastAPI.
"""
