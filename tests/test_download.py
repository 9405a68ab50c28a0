"""Registered files missing locally are downloaded (pooch) from a local HTTP server, never the internet."""
import functools
import hashlib
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import anndata as ad
import numpy as np
import pooch
import pytest
import scipy.sparse as sp

from omics_cl import datasets

REL = "tiny/cells.h5ad"


class _Server:
    """``http.server`` on 127.0.0.1 (port 0) serving ``root``; records each requested path."""

    def __init__(self, root):
        self.requests, self.running = [], True
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *args):
                server.requests.append(self.path)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if not self.running:
            return
        self.running = False
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A served tiny h5ad, an empty data dir, a temp cache, and a manifest dir (``write(sha256, url)``)."""
    served = tmp_path / "served"
    (served / "tiny").mkdir(parents=True)
    adata = ad.AnnData(sp.csr_matrix(np.arange(12, dtype=np.int32).reshape(4, 3)))
    adata.obs["cell_type"] = ["a", "b", "a", "b"]
    adata.write_h5ad(served / REL)
    sha = hashlib.sha256((served / REL).read_bytes()).hexdigest()
    server = _Server(served)
    mdir, data, cache = tmp_path / "manifests", tmp_path / "data", tmp_path / "cache"
    mdir.mkdir()
    data.mkdir()
    monkeypatch.setenv(datasets.MANIFEST_DIR_VAR, str(mdir))
    monkeypatch.setenv(datasets.DATA_DIR_VAR, str(data))
    monkeypatch.setenv(datasets.CACHE_DIR_VAR, str(cache))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.delenv(datasets.OFFLINE_VAR)  # set by conftest; this server is local

    def write(sha256=sha, url=f"{server.url}/{REL}"):
        (mdir / "tiny.json").write_text(json.dumps({
            "name": "tiny", "description": "4 cells x 3 genes", "label_keys": ["cell_type"],
            "default_label_key": "cell_type", "origin_url": "a test server", "licence": "none",
            "files": [{"role": "rna", "path": REL, "sha256": sha256, "url": url}]}))

    yield {"server": server, "served": served, "data": data, "cache": cache, "write": write, "adata": adata}
    server.stop()  # idempotent


def _cached_files(cache):
    return [p for p in cache.rglob("*") if p.is_file()] if cache.exists() else []


def test_missing_file_is_downloaded_into_cache_and_loaded(env):
    env["write"]()
    assert datasets.file_status("tiny", "rna")[1] == "missing"
    a = datasets.load("tiny")
    np.testing.assert_array_equal(a.X.toarray(), env["adata"].X.toarray())
    assert list(a.obs["cell_type"]) == ["a", "b", "a", "b"]
    assert env["server"].requests == [f"/{REL}"]
    assert datasets.path("tiny", "rna") == env["cache"] / REL
    assert datasets.file_status("tiny", "rna") == (env["cache"] / REL, "cached")


def test_second_call_uses_the_cache_without_a_request(env):
    env["write"]()
    datasets.load("tiny")
    datasets.load("tiny")
    assert datasets.path("tiny", "rna") == env["cache"] / REL
    assert len(env["server"].requests) == 1


def _corrupt_cached_copy(env):
    target = env["cache"] / REL
    target.parent.mkdir(parents=True)
    target.write_bytes(b"half a file")


def test_corrupt_cached_copy_is_fetched_again(env):
    env["write"]()
    _corrupt_cached_copy(env)
    assert datasets.load("tiny").shape == (4, 3)
    assert len(env["server"].requests) == 1


def test_corrupt_cached_copy_is_dropped_even_when_offline(env):
    env["write"]()
    _corrupt_cached_copy(env)
    env["server"].stop()
    with pytest.raises(FileNotFoundError, match="ConnectionError"):
        datasets.load("tiny")
    assert _cached_files(env["cache"]) == []


def test_sha_mismatch_is_a_clear_error_and_leaves_nothing_in_the_cache(env):
    env["write"](sha256="0" * 64)
    with pytest.raises(ValueError, match=r"'tiny'.*http://127\.0\.0\.1:\d+/tiny/cells\.h5ad.*sha256") as err:
        datasets.load("tiny")
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert env["server"].requests == [f"/{REL}"]
    assert _cached_files(env["cache"]) == []


def test_server_down_names_url_dataset_and_variables(env):
    env["write"]()
    env["server"].stop()
    url = f"{env['server'].url}/{REL}"
    with pytest.raises(FileNotFoundError) as err:
        datasets.path("tiny", "rna")
    msg = str(err.value)
    for part in (url, "'tiny'", "'rna'", "$OMICS_CL_DATA_DIR", "$OMICS_CL_CACHE_DIR", "ConnectionError"):
        assert part in msg, (part, msg)
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert _cached_files(env["cache"]) == []


def test_http_404_is_reported(env):
    env["write"](url=f"{env['server'].url}/nowhere.h5ad")
    with pytest.raises(FileNotFoundError, match=r"nowhere\.h5ad failed \(HTTP 404\)"):
        datasets.load("tiny")
    assert _cached_files(env["cache"]) == []


def test_offline_switch_refuses_to_download_and_names_url_and_variables(env, monkeypatch):
    env["write"]()
    monkeypatch.setenv(datasets.OFFLINE_VAR, "1")
    with pytest.raises(FileNotFoundError) as err:
        datasets.load("tiny")
    for part in (f"{env['server'].url}/{REL}", "'tiny'", "$OMICS_CL_OFFLINE=1", "$OMICS_CL_DATA_DIR"):
        assert part in str(err.value), (part, str(err.value))
    assert env["server"].requests == [] and _cached_files(env["cache"]) == []
    for value in ("0", "", "false"):  # these leave downloads on
        monkeypatch.setenv(datasets.OFFLINE_VAR, value)
        assert not datasets.offline()
    assert datasets.load("tiny").shape == (4, 3) and len(env["server"].requests) == 1


def test_offline_switch_keeps_local_and_cached_files(env, monkeypatch):
    env["write"]()
    datasets.load("tiny")  # into the cache
    monkeypatch.setenv(datasets.OFFLINE_VAR, "1")
    assert datasets.path("tiny", "rna") == env["cache"] / REL
    assert len(env["server"].requests) == 1


def test_tests_run_offline():
    assert datasets.offline()  # conftest's autouse fixture


def test_local_data_dir_copy_wins_over_download(env):
    env["write"]()
    (env["data"] / "tiny").mkdir()
    shutil.copyfile(env["served"] / REL, env["data"] / REL)
    assert datasets.path("tiny", "rna") == env["data"] / REL
    assert datasets.load("tiny").shape == (4, 3)
    assert env["server"].requests == [] and _cached_files(env["cache"]) == []


def test_corrupt_local_copy_is_refused_not_downloaded_over(env):
    env["write"]()
    (env["data"] / "tiny").mkdir()
    (env["data"] / REL).write_bytes(b"corrupt")
    with pytest.raises(ValueError, match=r"tiny.*does not match its sha256.*OMICS_CL_DATA_DIR"):
        datasets.load("tiny")
    assert env["server"].requests == []


def test_file_without_url_says_so(env):
    env["write"](url=None)
    with pytest.raises(FileNotFoundError, match=r"'tiny'.*\$OMICS_CL_DATA_DIR.*no direct download.*a test server"):
        datasets.load("tiny")
    assert env["server"].requests == []


def test_default_cache_is_pooch_os_cache(monkeypatch):
    monkeypatch.delenv(datasets.CACHE_DIR_VAR, raising=False)
    assert datasets.cache_dir() == pooch.os_cache("omics_cl")


def test_shipped_manifests_have_pinned_https_urls_or_none():
    urls = [f.url for m in datasets.manifests().values() for f in m.files]
    assert any(urls)
    for url in filter(None, urls):
        assert url.startswith("https://raw.githubusercontent.com/PeterZZQ/scMoMaT/"), url
        assert len(url.split("/")[5]) == 40, f"{url} is not pinned to a commit"
