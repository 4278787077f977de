"""Real embedrt servers for the client's tests, started once per test session.

Paths come from the environment that `tests/tests/python_client.rs` sets, with defaults for a
checkout built by `cargo build --workspace` after `scripts/setup.sh`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterator, List

import httpx
import pytest

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("EMBEDRT_BIN", REPO / "target/debug/embedrt"))
PLUGIN_DIR = Path(os.environ.get("EMBEDRT_PLUGIN_DIR", BINARY.parent))
MINILM = Path(os.environ.get("EMBEDRT_MINILM_DIR", REPO / ".assets/models/all-MiniLM-L6-v2"))
FIXTURES = Path(os.environ.get("EMBEDRT_FIXTURES", REPO.parent / "shared/fixtures"))

MINILM_NAME = "all-MiniLM-L6-v2"


class Server:
    """One `embedrt serve` process on free loopback ports."""

    def __init__(self, server_toml: str, models_toml: str, http_port: int = 0) -> None:
        self.http_port, self.grpc_port = http_port or free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self._dir = tempfile.TemporaryDirectory(prefix="embedrt-pyclient-")
        config = Path(self._dir.name) / "config.toml"
        config.write_text(
            f'[server]\nhttp = "{self.url[7:]}"\ngrpc = "{self.grpc_target}"\n'
            f"plugin_dirs = [{json.dumps(str(PLUGIN_DIR))}]\n{server_toml}\n{models_toml}\n"
        )
        assert BINARY.is_file(), f"{BINARY} is missing: run `cargo build --workspace` first"
        self._log = open(Path(self._dir.name) / "server.log", "wb")
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited before it was ready:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in time:\n{self.log()}")

    def post(self, body: Dict) -> httpx.Response:
        """A raw ``POST /v1/embeddings``, bypassing the client."""
        return httpx.post(f"{self.url}/v1/embeddings", json=body, timeout=60)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of one Prometheus metric's samples that carry ``labels``."""
        total = 0.0
        for line in httpx.get(f"{self.url}/metrics").text.splitlines():
            series, _, value = line.rpartition(" ")
            metric, _, label_text = series.partition("{")
            if metric != name:
                continue
            present = dict(
                pair.split("=", 1) for pair in label_text.rstrip("}").split(",") if "=" in pair
            )
            if all(present.get(key) == f'"{want}"' for key, want in labels.items()):
                total += float(value)
        return total

    def log(self) -> str:
        self._log.flush()
        return (Path(self._dir.name) / "server.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        self._dir.cleanup()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def model_table(name: str, path: Path, backend: str, extra: str = "") -> str:
    """A ``[[models]]`` table."""
    quoted = {key: json.dumps(value) for key, value in (("name", name), ("path", str(path)))}
    return (
        f"[[models]]\nname = {quoted['name']}\npath = {quoted['path']}\n"
        f"backend = {json.dumps(backend)}\n{extra}\n"
    )


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """MiniLM on onnx (also as `small-requests`, 7 inputs per request at most) and the tiny
    jina-embeddings-v3 on candle (which also runs the base weights, task `none`)."""
    models = (
        model_table(MINILM_NAME, MINILM, "onnx")
        + model_table("small-requests", MINILM, "onnx", "max_inputs_per_request = 7")
        + model_table("jina", FIXTURES / "jina-v3-tiny", "candle")
    )
    running = Server("", models)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def rerank_server() -> Iterator[Server]:
    """The two tiny cross-encoders (ms-marco on onnx, at most 4 documents a request; bge on
    candle) and MiniLM, an embedding model."""
    models = (
        model_table(
            "ms-marco", FIXTURES / "ms-marco-reranker-tiny", "onnx", "max_inputs_per_request = 4"
        )
        + model_table("bge", FIXTURES / "bge-reranker-tiny", "candle")
        + model_table(MINILM_NAME, MINILM, "onnx")
    )
    running = Server("", models)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def busy_server() -> Iterator[Server]:
    """A slow engine (20 ms a batch of at most 4) behind a queue of 8 inputs: concurrent
    clients are refused with 429 most of the time."""
    running = Server(
        "",
        model_table(
            "slow",
            MINILM,
            "echo",
            "options = { delay_ms = 20 }\n"
            "batching = { max_batch_requests = 4, max_queued_inputs = 8, max_wait_ms = 0 }",
        ),
    )
    yield running
    running.stop()


@pytest.fixture(scope="session")
def keyed_server() -> Iterator[Server]:
    """A server that wants `Bearer secret`."""
    running = Server('api_keys = ["secret"]', model_table("echo", MINILM, "echo"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def golden() -> Dict:
    """sentence-transformers' all-MiniLM-L6-v2 vectors."""
    return json.loads((FIXTURES / "all-MiniLM-L6-v2/expected.json").read_text())


@pytest.fixture(scope="session")
def jina_expected() -> Dict:
    """The official jina-embeddings-v3 code's outputs on the tiny checkpoint."""
    return json.loads((FIXTURES / "jina-v3-tiny/expected.json").read_text())


def cross_encoder_expected(name: str) -> Dict:
    """sentence-transformers' CrossEncoder outputs on one of the tiny rerankers."""
    return json.loads((FIXTURES / name / "expected.json").read_text())


def distinct_texts(count: int) -> List[str]:
    """``count`` different sentences of varied length."""
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda".split()
    return [
        f"sentence {i}: " + " ".join(words[(i + k) % len(words)] for k in range(1 + i % 17))
        for i in range(count)
    ]
