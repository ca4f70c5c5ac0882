"""The D4RL downloader against a real HTTP server on 127.0.0.1 (port 0), serving files the tests write."""

from __future__ import annotations

import contextlib
import functools
import http.server
import socket
import threading
from pathlib import Path

import pytest
from test_data_helpers import episode_arrays, write_file

from decision_minrnn.data import d4rl_file_path, download_d4rl
from decision_minrnn.workflows.datasets import load_dataset
from decision_minrnn.errors import RunFailure
from decision_minrnn.paths import d4rl_dataset_dir


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


class _ShortBody(http.server.BaseHTTPRequestHandler):
    """Announces 4096 bytes and sends 1000, then closes: a transfer cut short."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "4096")
        self.end_headers()
        self.wfile.write(b"\x89HDF\r\n\x1a\n" + b"x" * 992)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cache_files() -> list[Path]:
    root = d4rl_dataset_dir()
    return [p for p in root.rglob("*")] if root.exists() else []


@pytest.fixture
def served_dir(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    return folder


def test_download_writes_the_served_file(served_dir, monkeypatch):
    src = write_file(served_dir / "hopper_medium-v2.hdf5",
                     episode_arrays("hopper-medium", [6, 4], ["terminal", "timeout"]))
    with serve(functools.partial(_QuietFiles, directory=str(served_dir))) as base:
        monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", base + "/")
        path = download_d4rl("hopper-medium", verbose=False)
    assert path == d4rl_dataset_dir() / "hopper_medium-v2.hdf5"
    assert path.read_bytes() == src.read_bytes()
    assert _cache_files() == [path]  # no temporary left beside it


def test_auto_source_downloads_then_loads(served_dir, monkeypatch, capsys):
    write_file(served_dir / "walker2d_medium_replay-v2.hdf5",
               episode_arrays("walker2d-medium", [6, 4], ["terminal", "timeout"]))
    with serve(functools.partial(_QuietFiles, directory=str(served_dir))) as base:
        monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", base)
        ds = load_dataset("walker-medium-replay")
    assert ds.source == "d4rl" and ds.num_transitions == 10
    assert ds.location == str(d4rl_file_path("walker2d-medium-replay"))
    assert "source d4rl" in capsys.readouterr().err


def test_unreachable_server_gives_one_clear_line_and_leaves_nothing(monkeypatch):
    monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", f"http://127.0.0.1:{_closed_port()}/data")
    with pytest.raises(RunFailure) as info:
        download_d4rl("hopper-medium", verbose=False, timeout=5)
    message = str(info.value)
    assert "\n" not in message
    assert "/data/hopper_medium-v2.hdf5" in message and "unreachable" in message
    assert str(d4rl_dataset_dir()) in message and "$D4RL_DATASET_DIR" in message
    assert _cache_files() == []


def test_transfer_cut_short_leaves_nothing(monkeypatch):
    with serve(_ShortBody) as base:
        monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", base)
        with pytest.raises(RunFailure, match="cut short|IncompleteRead"):
            download_d4rl("hopper-medium", verbose=False, timeout=5)
    assert _cache_files() == []


def test_not_hdf5_and_http_errors_leave_nothing(served_dir, monkeypatch):
    (served_dir / "hopper_medium-v2.hdf5").write_text("<html>proxy login</html>")
    with serve(functools.partial(_QuietFiles, directory=str(served_dir))) as base:
        monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", base)
        with pytest.raises(RunFailure, match="not an HDF5 file"):
            download_d4rl("hopper-medium", verbose=False)
        with pytest.raises(RunFailure, match="HTTP 404"):
            download_d4rl("hopper-expert", verbose=False)
    assert _cache_files() == []


def test_existing_file_is_not_downloaded_again(monkeypatch):
    target = d4rl_file_path("hopper-medium")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"already here")
    monkeypatch.setenv("DECISION_MINRNN_D4RL_URL", f"http://127.0.0.1:{_closed_port()}")
    assert download_d4rl("hopper-medium", verbose=False) == target
    assert target.read_bytes() == b"already here"
