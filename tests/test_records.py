"""Specification of harness.analysis.records: the links a report gives into the stores."""

from __future__ import annotations

import pytest

from harness.browse import browse
from harness.stores import Stores


@pytest.mark.parametrize(("uri", "ui_url", "url"), [
    (None, None, "http://127.0.0.1:5000"),  # local SQLite: `mlflow ui` on its default port
    ("http://tracking.lab:8080/", None, "http://tracking.lab:8080"),  # a server: its own address
    ("postgresql://u@db/mlflow", None, None),  # a database: no link we could know
    (None, "http://127.0.0.1:5050", "http://127.0.0.1:5050"),  # told
])
def test_mlflow_links_follow_the_tracking_store_in_use(tmp_path, uri, ui_url, url):
    b = browse(Stores(root=tmp_path, tracking_uri=uri).mlflow_uri, ui_url)
    assert b.url == url
    if uri is None and ui_url is None:
        assert b.command == f"mlflow ui --backend-store-uri sqlite:///{tmp_path}/mlflow.db --port 5000"
