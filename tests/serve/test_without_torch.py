"""An index whose ONNX graph is exported is queried and served with torch unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import json, sys, time
sys.modules["torch"] = None  # from here on, any `import torch` raises ImportError
started = time.perf_counter()
from fastapi.testclient import TestClient
from stylefinder.engine import Engine
from stylefinder.serve.api import create_app
from stylefinder.serve.settings import ServerSettings

index, photo = sys.argv[1], sys.argv[2]
engine = Engine.open(index)
found = [r.id for r in engine.recommend(photo, k=5)]
category = engine.recognize(photo).category
with TestClient(create_app(ServerSettings(index_dir=index))) as client, open(photo, "rb") as f:
    answer = client.post("/v1/search", files={"image": ("q.png", f, "image/png")})
print(json.dumps({
    "engine": found,
    "category": category,
    "status": answer.status_code,
    "api": [r["id"] for r in answer.json()["results"]],
    "seconds": time.perf_counter() - started,
}))
"""


def test_an_index_with_an_exported_graph_needs_no_torch(demo_index, demo, embedder):
    index_dir, _ = demo_index
    photo, _category = demo.queries[0]
    expected = [r.id for r in _engine(index_dir, embedder).recommend(photo, k=5)]
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(index_dir), str(photo)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STYLEFINDER_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["engine"] == expected and result["status"] == 200
    assert result["api"] == expected and result["category"]


def _engine(index_dir: Path, embedder):
    from stylefinder.engine import Engine

    engine = Engine.open(index_dir)
    engine._embedder = embedder  # the session's model: the graph it exported is the one read
    return engine


_INDEX_SCRIPT = """
import json, sys
sys.modules["torch"] = None
from stylefinder.jobs.build import build_index
from stylefinder.index.store import IndexStore

summary = build_index(sys.argv[1], sys.argv[2])
header = IndexStore.open(sys.argv[2]).header
print(json.dumps({"embedded": summary.embedded, "fingerprint": header.weights_fingerprint}))
"""


def test_indexing_with_the_default_weights_exported_needs_no_torch(
    small_catalog, embedder, tmp_path
):
    """The session's embedder exported the default weights' graph (and recorded it): a new
    index of those weights is built with ONNX Runtime alone, in the same embedding space."""
    done = subprocess.run(
        [sys.executable, "-c", _INDEX_SCRIPT, str(small_catalog), str(tmp_path / "ix")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"embedded": 12, "fingerprint": embedder.space.weights_fingerprint}


def test_the_serve_extra_installs_and_serves_without_torch(demo_index, demo, embedder, tmp_path):
    """`pip install '.[serve]'` into a fresh venv (torch is not pulled in) answers the same
    searches on an index whose graph is exported."""
    index_dir, _ = demo_index
    photo, _category = demo.queries[0]
    expected = [r.id for r in _engine(index_dir, embedder).recommend(photo, k=5)]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    root = Path(__file__).resolve().parents[2]
    # the test run's own pip installs into the new venv; no .pyc compiling: 4x quicker
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile"]
    install = subprocess.run(
        [*pip, f"{root}[serve]", "httpx"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    script = _SCRIPT.replace('sys.modules["torch"] = None', "import importlib.util")
    # recognition without torch is the test above; here it would only compile the colour
    # kernels afresh for the new venv (numba, about 30 s)
    script = script.replace("engine.recognize(photo).category", "None")
    script += '\nassert importlib.util.find_spec("torch") is None, "torch is installed"\n'
    done = subprocess.run(
        [python, "-c", script, str(index_dir), str(photo)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "STYLEFINDER_THREADS": "1"},
        cwd=tmp_path,  # not the checkout: the venv's installed copy is what runs
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["engine"] == expected and result["api"] == expected
