"""`tfcli serve`: a model behind HTTP, LibreTranslate's API and a native one (app.py), the
request and answer bodies (schemas.py), and the thread that batches translation (worker.py)."""
