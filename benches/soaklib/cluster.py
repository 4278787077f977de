"""The soak's cluster: Redis, two `embedrt serve` replicas sharing one config file, and nginx in
front of them, each process started so that it dies with the driver; and the faults injected
into them (reloads, the engine swap, a poison input, a SIGKILLed replica, a killed Redis)."""

import queue
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from memory_burst import status_mb

from .traffic import http_post

ROOT = Path(__file__).resolve().parents[2]
JINA = ROOT.parent / "shared" / "fixtures" / "jina-v3-tiny"
MINILM = ROOT / ".assets" / "models" / "all-MiniLM-L6-v2"
# The echo model panics on this token id.
POISON_TOKEN = 7


class Spawner:
    """Starts every process of the cluster under `setpriv --pdeathsig KILL` from the main thread,
    so that each dies with this script: the parent-death signal fires when the thread that forked
    the child ends, and the fault thread ends before the run does, so other threads hand their
    commands to `serve`. (Not Python's `preexec_fn`: Python code between fork and exec can
    deadlock in a process with other threads, and a restarted replica once never started.)"""

    def __init__(self):
        self.requests = queue.Queue()

    def spawn(self, args, log, death_signal="KILL"):
        """Starts `args` with stdout and stderr appended to `log`; returns the Popen. The
        process gets `death_signal` when this script dies (TERM for nginx, whose master stops its
        workers then; killed, it would leave them serving)."""
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(
                ["setpriv", "--pdeathsig", death_signal, "--", *map(str, args)],
                stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        answer = queue.Queue()
        self.requests.put((args, log, death_signal, answer))
        return answer.get()

    def serve(self, seconds):
        """Runs the other threads' spawn requests for `seconds`."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                args, log, death_signal, answer = self.requests.get(timeout=min(left, 0.1))
            except queue.Empty:
                continue
            answer.put(self.spawn(args, log, death_signal))


SPAWNER = Spawner()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(redis_port, jina_backend, minilm_rows):
    return f"""
[cache]
memory_bytes = 33554432
redis_url = "redis://127.0.0.1:{redis_port}/0"

[[models]]
name = "jina"
path = "{JINA}"
backend = "{jina_backend}"
batching = {{ max_batch_tokens = 8192, max_batch_requests = 32 }}

[[models]]
name = "minilm"
path = "{MINILM}"
backend = "onnx"
batching = {{ max_batch_tokens = 8192, max_batch_requests = {minilm_rows} }}

[[models]]
name = "fragile"
path = "{MINILM}"
backend = "echo"
options = {{ panic_on_token = {POISON_TOKEN} }}
"""


@dataclass
class Replica:
    """One `embedrt serve` process and its ports (kept across restarts)."""
    index: int
    http: int
    grpc: int
    process: subprocess.Popen = None


class Cluster:
    """Starts and stops the processes, and injects the faults."""

    def __init__(self, args):
        self.args = args
        self.out = Path(args.out)
        self.config = self.out / "soak.toml"
        self.redis_port = free_port()
        self.redis = None
        self.jina_backend = "onnx"
        # Changed by every reload (32 or 31 rows a batch), so that each reload loads minilm anew.
        self.minilm_rows = 32
        self.replicas = [Replica(i, free_port(), free_port()) for i in range(2)]
        self.in_nginx = {0, 1}
        self.nginx = None
        self.nginx_http = free_port()
        self.nginx_grpc = free_port()
        self.nginx_dir = self.out / "nginx"

    def start(self):
        self.start_redis()
        self.write_config()
        for replica in self.replicas:
            self.start_replica(replica)
        for replica in self.replicas:
            self.wait_ready(replica)
        self.nginx_dir.mkdir(parents=True, exist_ok=True)
        self.write_nginx_config()
        self.nginx = SPAWNER.spawn(
            ["nginx", "-e", "stderr", "-p", str(self.nginx_dir), "-c",
             str(self.nginx_dir / "nginx.conf"), "-g", "daemon off;"],
            self.out / "nginx.log", death_signal="TERM",
        )
        wait_answers(f"http://127.0.0.1:{self.nginx_http}/ready", 30)

    def stop(self):
        for process in [self.nginx, self.redis] + [r.process for r in self.replicas]:
            if process and process.poll() is None:
                process.terminate()
        for process in [self.nginx, self.redis] + [r.process for r in self.replicas]:
            if process:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()

    def start_redis(self):
        self.redis = SPAWNER.spawn(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            self.out / "redis.log",
        )

    def write_config(self):
        self.config.write_text(config_text(self.redis_port, self.jina_backend, self.minilm_rows))

    def replica_log(self, replica):
        return self.out / f"replica-{replica.index}.log"

    def start_replica(self, replica):
        replica.process = SPAWNER.spawn(
            [self.args.embedrt, "serve", "--config", str(self.config),
             "--http", f"127.0.0.1:{replica.http}", "--grpc", f"127.0.0.1:{replica.grpc}"],
            self.replica_log(replica),
        )

    def wait_ready(self, replica):
        """Waits until `replica` answers `/ready`; raises, with its log's end, if it exits."""
        wait_answers(f"http://127.0.0.1:{replica.http}/ready", 300, replica.process,
                     self.replica_log(replica))

    def write_nginx_config(self):
        text = (ROOT / "deploy/nginx/nginx.conf.template").read_text()
        live = [r for r in self.replicas if r.index in self.in_nginx]
        fields = {
            "@PREFIX@": str(self.nginx_dir),
            "@HTTP_SERVERS@": "\n".join(f"        server 127.0.0.1:{r.http} max_fails=0;" for r in live),
            "@GRPC_SERVERS@": "\n".join(f"        server 127.0.0.1:{r.grpc} max_fails=0;" for r in live),
            "@HTTP_LISTEN@": f"127.0.0.1:{self.nginx_http}",
            "@GRPC_LISTEN@": f"127.0.0.1:{self.nginx_grpc}",
        }
        for name, value in fields.items():
            text = text.replace(name, value)
        (self.nginx_dir / "nginx.conf").write_text(text)

    def reload_nginx(self):
        self.write_nginx_config()
        self.nginx.send_signal(signal.SIGHUP)

    # The faults -------------------------------------------------------------------------------

    def reload_models(self, swap_engine=False):
        """Rewrites the config (minilm's batch rows changed, so that it loads again; jina's
        engine switched when `swap_engine`) and reloads every replica; returns what each
        answered."""
        if swap_engine:
            self.jina_backend = "candle" if self.jina_backend == "onnx" else "onnx"
        self.minilm_rows = 63 - self.minilm_rows
        self.write_config()
        answers = []
        for replica in self.replicas:
            request = urllib.request.Request(
                f"http://127.0.0.1:{replica.http}/admin/reload", b"", method="POST")
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    answers.append(response.status)
            except Exception as error:  # noqa: BLE001 - recorded in the event
                answers.append(str(error))
        return f"jina on {self.jina_backend}, minilm {self.minilm_rows} rows; replicas answered {answers}"

    def kill_replica(self, index):
        """SIGKILLs a replica, takes it out of nginx, starts it again and puts it back once
        ready (a readiness probe's job in Kubernetes)."""
        replica = self.replicas[index]
        replica.process.kill()
        replica.process.wait()
        killed = time.monotonic()
        self.in_nginx.discard(index)
        self.reload_nginx()
        self.start_replica(replica)
        self.wait_ready(replica)
        self.in_nginx.add(index)
        self.reload_nginx()
        return f"replica {index} killed; serving again after {time.monotonic() - killed:.1f} s"

    def kill_redis(self):
        self.redis.kill()
        self.redis.wait()
        return "Redis killed"

    def restart_redis(self):
        self.start_redis()
        return "Redis started again"

    def poison(self):
        """Sends the input that panics the echo backend, twice (the second time it is refused
        from quarantine); returns what came back."""
        statuses = []
        for _ in range(2):
            status, _ = http_post(
                f"127.0.0.1:{self.nginx_http}",
                {"model": "fragile", "input": [[101, POISON_TOKEN, 102]]}, 60)
            statuses.append(status)
        return f"poison input answered {statuses} (500 expected)"

    def resident_mb(self):
        """Each replica's resident memory, MB (None while it is down)."""
        values = []
        for replica in self.replicas:
            try:
                values.append(status_mb(replica.process.pid, "VmRSS:"))
            except (OSError, KeyError):
                values.append(None)
        return values


def wait_answers(url, seconds, process=None, log=None):
    """Waits until `url` answers 2xx; raises when `seconds` pass or `process` exits first (with
    the end of its `log`)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except Exception:  # noqa: BLE001 - not up yet
            if process is not None and process.poll() is not None:
                tail = "".join(Path(log).read_text(errors="replace").splitlines(True)[-20:])
                raise RuntimeError(f"exited with {process.returncode} before {url} answered:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer in {seconds} s")
            time.sleep(0.1)

