"""A soak with faults: embedrt replicas behind nginx with a Redis cache, driven by many clients of
mixed traffic while faults are injected on a schedule (benches/soak.sh sets it up and runs it).

What runs: `redis-server`, two `embedrt serve` replicas sharing one config file (the tiny
jina-embeddings-v3 of the fixtures, all-MiniLM-L6-v2, and an `echo` model that panics on one token
id), and nginx in front of them (deploy/nginx/nginx.conf.template). Clients go through nginx.

Traffic, per client, back to back after a short random pause: HTTP (OpenAI's request) or gRPC
(`Embed`); texts or token ids; jina's tasks, Matryoshka sizes and binary encodings; 5% invalid
requests (which must get a 4xx error in the API's format, never a 5xx); some clients upload slowly,
some give up after a few milliseconds (their requests count neither way).

Faults, at fixed shares of the run: the config file rewritten and reloaded on both replicas every
tenth of the run (minilm's batch size changed each time, so that it loads again; once jina moved
from onnx to candle: the engine swap), a poison input that panics the echo backend (its request
must fail alone, with a 500), one replica SIGKILLed and started again (out of nginx's list until
`/ready` answers, as a readiness probe does), Redis SIGKILLed and started again.

Clients retry, at most twice, what a client's own retry policy would: gRPC UNAVAILABLE and a
kept-alive HTTP connection closed under them; each retry is counted and reported. A valid request
that still fails after that is a failure.

Writes soak.json (per-minute failed valid requests, p50/p99 and resident memory, the events),
soak.png (latency and memory over time) and prints a Markdown table. Exits 1 when a valid request
failed, an invalid one got anything but a 4xx, or a fault could not be carried out.

Usage: python benches/soak.py --embedrt BIN --out DIR [--seconds 600] [--clients 60]
(the plugins are found beside BIN, the echo plugin among them)
"""

import argparse
import base64
import http.client
import json
import math
import queue
import random
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

ROOT = Path(__file__).resolve().parent.parent
JINA = ROOT.parent / "shared" / "fixtures" / "jina-v3-tiny"
MINILM = ROOT / ".assets" / "models" / "all-MiniLM-L6-v2"
SENTENCES = (ROOT / "benches" / "data" / "sentences.txt").read_text().splitlines()
JINA_TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
JINA_SIZES = [8, 16, 32]
# The echo model panics on this token id.
POISON_TOKEN = 7
BUCKET_SECONDS = 10


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


def grpc_messages():
    """EmbedRequest and EmbedResponse from the Python client's compiled descriptor."""
    data = (ROOT / "clients/python/src/embedrt/_proto/embedrt_v1.binpb").read_bytes()
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(file)
    return tuple(
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"embedrt.v1.{name}"))
        for name in ("EmbedRequest", "EmbedResponse")
    )


EmbedRequest, EmbedResponse = grpc_messages()


# ---------------------------------------------------------------------------------------------
# The cluster: Redis, the replicas, nginx.


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
            wait_ready(self, replica)
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

    def start_replica(self, replica):
        replica.process = SPAWNER.spawn(
            [self.args.embedrt, "serve", "--config", str(self.config),
             "--http", f"127.0.0.1:{replica.http}", "--grpc", f"127.0.0.1:{replica.grpc}"],
            self.out / f"replica-{replica.index}.log",
        )

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
        wait_ready(self, replica)
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
                status = Path(f"/proc/{replica.process.pid}/status").read_text()
                kb = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("VmRSS:"))
                values.append(kb / 1024)
            except (OSError, StopIteration):
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


def wait_ready(cluster, replica):
    wait_answers(f"http://127.0.0.1:{replica.http}/ready", 300, replica.process,
                 cluster.out / f"replica-{replica.index}.log")


# ---------------------------------------------------------------------------------------------
# The traffic.


def http_post(address, body, timeout, connection=None):
    """POSTs `body` as JSON to /v1/embeddings on `address` (host:port), on `connection` when
    given; returns (status, parsed answer)."""
    own = connection is None
    if own:
        host, port = address.split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        connection.request("POST", "/v1/embeddings", data, {"content-type": "application/json"})
        response = connection.getresponse()
        raw = response.read()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = raw
        return response.status, answer
    finally:
        if own:
            connection.close()


@dataclass
class Call:
    """One request to send, and what a correct answer looks like."""
    protocol: str  # http, grpc
    body: dict
    count: int  # inputs
    width: int  # dimensions of each vector
    encoding: str  # float, base64, ubinary, binary
    valid: bool = True
    style: str = "normal"  # normal, slow, vanishing


def texts(rng):
    start = rng.randrange(len(SENTENCES) - 10)
    return SENTENCES[start:start + rng.randint(1, 8)]


def token_ids(rng, model, count):
    if model == "jina":
        return [[0] + [rng.randrange(5, 200) for _ in range(rng.randint(1, 30))] + [2]
                for _ in range(count)]
    return [[101] + [rng.randrange(1000, 29000) for _ in range(rng.randint(1, 30))] + [102]
            for _ in range(count)]


def valid_call(rng):
    model = rng.choices(["jina", "minilm", "fragile"], [60, 35, 5])[0]
    protocol = "grpc" if rng.random() < 0.3 else "http"
    count = rng.randint(1, 8)
    body = {"model": model}
    if rng.random() < 0.15:
        body["input"] = token_ids(rng, model, count)
    else:
        body["input"] = texts(rng)[:count]
        count = len(body["input"])
    width = {"jina": 32, "minilm": 384, "fragile": 384}[model]
    encoding = "float"
    if model == "jina":
        body["task"] = rng.choice(JINA_TASKS)
        if rng.random() < 0.5:
            width = body["dimensions"] = rng.choice(JINA_SIZES)
        encoding = rng.choice(["float", "float", "base64", "ubinary", "binary"])
        if encoding != "float":
            body["embedding_type"] = encoding
    elif protocol == "http" and rng.random() < 0.3:
        encoding = body["encoding_format"] = "base64"
    return Call(protocol, body, count, width, encoding)


def invalid_call(rng):
    body = rng.choice([
        {"model": "no-such-model", "input": "hello"},
        {"model": "jina", "input": []},
        {"model": "jina", "input": "hello", "dimensions": 7},
        {"model": "jina", "input": [[0, 99999, 2]]},
        {"model": "minilm", "input": 5},
        {"model": "minilm", "input": "hello", "task": "retrieval.query"},
        {"model": "jina", "input": "hello", "embedding_type": "octal"},
    ])
    protocol = "grpc" if rng.random() < 0.3 and isinstance(body["input"], (str, list)) \
        and "embedding_type" not in body else "http"
    return Call(protocol, body, 0, 0, "float", valid=False)


def next_call(rng, slow_client):
    roll = rng.random()
    if roll < 0.05:
        return invalid_call(rng)
    call = valid_call(rng)
    if slow_client:
        call.protocol, call.style = "http", "slow"
    elif roll < 0.08:
        call.protocol, call.style = "http", "vanishing"
    return call


def check_http(call, status, answer):
    """Why the answer to a valid HTTP call is wrong, or None."""
    if status != 200:
        return f"HTTP {status}: {str(answer)[:200]}"
    data = answer.get("data", [])
    if len(data) != call.count:
        return f"{len(data)} vectors for {call.count} inputs"
    for item in data:
        vector = item["embedding"]
        if call.encoding == "base64":
            raw = base64.b64decode(vector)
            vector = struct.unpack(f"<{len(raw) // 4}f", raw)
        if call.encoding in ("ubinary", "binary"):
            length = len(vector) * 8
        else:
            length = len(vector)
            if abs(math.fsum(v * v for v in vector) - 1) > 1e-3:
                return "a vector that is not of unit length"
        if length != call.width:
            return f"a vector of {length} dimensions, {call.width} wanted"
    return None


def grpc_request(call):
    body = call.body
    request = EmbedRequest(model=body["model"])
    inputs = body["input"]
    if isinstance(inputs, str):
        request.texts.append(inputs)
    elif inputs and isinstance(inputs[0], list):
        for ids in inputs:
            request.tokens.add(ids=ids)
    else:
        request.texts.extend(inputs)
    if "task" in body:
        request.task = body["task"]
    if "dimensions" in body:
        request.dimensions = body["dimensions"]
    request.embedding_type = {"float": 1, "base64": 1, "ubinary": 2, "binary": 3}[call.encoding]
    return request


def check_grpc(call, response):
    if len(response.embeddings) != call.count:
        return f"{len(response.embeddings)} vectors for {call.count} inputs"
    for embedding in response.embeddings:
        if call.encoding in ("ubinary", "binary"):
            length = len(embedding.bits) * 8
        else:
            length = len(embedding.values)
            if abs(math.fsum(v * v for v in embedding.values) - 1) > 1e-3:
                return "a vector that is not of unit length"
        if length != call.width:
            return f"a vector of {length} dimensions, {call.width} wanted"
    return None


def slow_post(address, body, seconds):
    """Sends the request's body in pieces over `seconds`; returns (status, answer)."""
    host, port = address.split(":")
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(
            f"POST /v1/embeddings HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode())
        pieces = 8
        step = max(1, len(data) // pieces)
        for i in range(0, len(data), step):
            sock.sendall(data[i:i + step])
            time.sleep(seconds / pieces)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    if b"transfer-encoding: chunked" in head.lower():
        payload = unchunk(payload)
    return status, json.loads(payload)


def unchunk(payload):
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2:]
    return out


@dataclass
class Record:
    """What happened, shared by the client threads."""
    started: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict = field(default_factory=dict)  # bucket -> [seconds]
    by_kind: dict = field(default_factory=dict)  # "protocol model" -> [seconds]
    counts: dict = field(default_factory=dict)  # (bucket, outcome) -> n
    failures: list = field(default_factory=list)
    retries: list = field(default_factory=list)
    memory: list = field(default_factory=list)  # (t, [mb per replica])
    events: list = field(default_factory=list)  # (t, text)

    def bucket(self, at):
        return int((at - self.started) // BUCKET_SECONDS)

    def add(self, outcome, at, latency=None, why=None, call=None):
        with self.lock:
            key = (self.bucket(at), outcome)
            self.counts[key] = self.counts.get(key, 0) + 1
            if latency is not None:
                self.latencies.setdefault(self.bucket(at), []).append(latency)
                kind = f"{call.protocol} {call.body['model']}"
                self.by_kind.setdefault(kind, []).append(latency)
            kept = self.retries if outcome == "retried" else self.failures
            if why and len(kept) < 200:
                kept.append({"t": round(at - self.started, 1), "why": why,
                                      "protocol": call.protocol, "style": call.style,
                                      "body": str(call.body)[:300]})

    def event(self, label, text):
        """Notes a fault (`label`: a word or two for the chart) and what came of it."""
        with self.lock:
            self.events.append((round(time.monotonic() - self.started, 1), label, text))
        print(f"[soak] {self.events[-1][0]:7.1f} s  {label}: {text}", flush=True)


# Errors a client retries, as HTTP clients and gRPC's retry policy do: a keep-alive connection
# that the proxy closed before the request reached it (nginx closes its idle ones when it
# reloads), and gRPC's UNAVAILABLE (a replica that died under the call or is still loading).
RETRIES = 2


class Retry(Exception):
    """A failure the client may retry; counted, and a failure only when the retries run out."""


def send(call, address, connection, embed):
    """Sends `call` once; returns why its answer is wrong (None when right). Raises Retry for a
    failure worth retrying."""
    if call.protocol == "grpc":
        try:
            response = embed(grpc_request(call), timeout=60)
        except grpc.RpcError as error:
            code = error.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                raise Retry(f"gRPC UNAVAILABLE: {error.details()}") from error
            if call.valid:
                return f"gRPC {code.name}: {error.details()}"
            if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
                return f"invalid request answered gRPC {code.name}: {error.details()}"
            return None
        return check_grpc(call, response) if call.valid else "an invalid request was accepted"
    if call.style == "slow":
        status, answer = slow_post(address, call.body, 1.5)
    else:
        try:
            status, answer = http_post(address, call.body, 60, connection)
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected) as error:
            raise Retry(f"{type(error).__name__} on a kept-alive connection") from error
    if call.valid:
        return check_http(call, status, answer)
    if 400 <= status < 500 and isinstance(answer, dict) and "message" in answer.get("error", {}):
        return None
    return f"invalid request answered HTTP {status}: {str(answer)[:200]}"


def client(index, args, cluster, record, channel, stop):
    rng = random.Random(index)
    address = f"127.0.0.1:{cluster.nginx_http}"
    host, port = address.split(":")
    slow_client = index < args.slow_clients
    embed = channel.unary_unary("/embedrt.v1.Embedder/Embed",
                                request_serializer=EmbedRequest.SerializeToString,
                                response_deserializer=EmbedResponse.FromString)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    while not stop.is_set():
        time.sleep(rng.uniform(0, 2 * args.think_ms / 1000))
        call = next_call(rng, slow_client)
        sent = time.monotonic()
        if call.style == "vanishing":
            try:
                http_post(address, call.body, rng.uniform(0.002, 0.05))
            except OSError:
                pass
            record.add("vanished", sent)
            continue
        why = None
        for attempt in range(RETRIES + 1):
            try:
                why = send(call, address, connection, embed)
                break
            except Retry as retry:
                why = f"{retry} (after {attempt} retries)"
                record.add("retried", sent, why=str(retry), call=call)
            except (OSError, http.client.HTTPException, ValueError) as error:
                why = f"{type(error).__name__}: {error}"
                break
            finally:
                if why:
                    connection.close()  # http.client opens it again on the next request
            time.sleep(0.05 * (attempt + 1))
        latency = time.monotonic() - sent
        if call.valid:
            outcome = "failed" if why else "ok"
            record.add(outcome, sent, latency if call.style == "normal" and not why else None,
                       why, call)
        else:
            record.add("invalid_wrong" if why else "invalid_refused", sent, None, why, call)


# ---------------------------------------------------------------------------------------------
# The run.


def schedule(seconds):
    """(time, fault) pairs: a reload every tenth of the run, the engine swap at the middle,
    the other faults in between."""
    tenth = seconds / 10
    plan = [(tenth * i, "reload") for i in range(1, 10) if i != 5]
    plan += [(tenth * 5, "swap"), (tenth * 2.5, "poison"), (tenth * 3.5, "kill replica"),
             (tenth * 6.5, "kill redis"), (tenth * 7, "restart redis")]
    return sorted(plan)


def run_faults(cluster, record, stop, seconds):
    """Injects the faults of `schedule` at their times; a fault that cannot be carried out (a
    replica that does not come back) is recorded as "fault failed" and ends the schedule."""
    faults = {
        "reload": ("reload", cluster.reload_models),
        "swap": ("engine swap", lambda: cluster.reload_models(swap_engine=True)),
        "poison": ("backend panic", cluster.poison),
        "kill replica": ("replica SIGKILL", lambda: cluster.kill_replica(1)),
        "kill redis": ("Redis SIGKILL", cluster.kill_redis),
        "restart redis": ("Redis back", cluster.restart_redis),
    }
    for at, fault in schedule(seconds):
        while time.monotonic() - record.started < at:
            if stop.wait(0.2):
                return
        label, inject = faults[fault]
        try:
            record.event(label, inject())
        except Exception as error:  # noqa: BLE001 - reported, and the run fails
            record.event("fault failed", f"{label}: {error}")
            return


def sample_memory(cluster, record, stop):
    while not stop.wait(2):
        record.memory.append((round(time.monotonic() - record.started, 1), cluster.resident_mb()))


def percentile(values, share):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(len(values) * share + 0.999999) - 1))]


def summarize(record, seconds):
    minutes = []
    per_minute = 60 // BUCKET_SECONDS
    for minute in range(int((seconds + 59) // 60)):
        buckets = range(minute * per_minute, (minute + 1) * per_minute)
        latencies = [v for b in buckets for v in record.latencies.get(b, [])]
        count = lambda outcome: sum(record.counts.get((b, outcome), 0) for b in buckets)  # noqa: E731
        memory = [sum(m for m in mb if m) for t, mb in record.memory if minute * 60 <= t < (minute + 1) * 60]
        minutes.append({
            "minute": minute + 1,
            "valid_ok": count("ok"),
            "valid_failed": count("failed"),
            "invalid_refused": count("invalid_refused"),
            "invalid_wrong": count("invalid_wrong"),
            "vanished": count("vanished"),
            "retried": count("retried"),
            "p50_ms": round(percentile(latencies, 0.5) * 1000, 1) if latencies else None,
            "p99_ms": round(percentile(latencies, 0.99) * 1000, 1) if latencies else None,
            "rss_mb_max": round(max(memory), 1) if memory else None,
        })
    return minutes


def draw(record, seconds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = sorted(record.latencies)
    times = [(b + 0.5) * BUCKET_SECONDS / 60 for b in buckets]
    p50 = [percentile(record.latencies[b], 0.5) * 1000 for b in buckets]
    p99 = [percentile(record.latencies[b], 0.99) * 1000 for b in buckets]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
    top.plot(times, p50, label="p50")
    top.plot(times, p99, label="p99")
    top.set_ylabel(f"latency, ms (per {BUCKET_SECONDS} s)")
    top.set_yscale("log")
    top.legend(loc="upper left")
    for index in range(2):
        points = [(t / 60, mb[index]) for t, mb in record.memory if mb[index] is not None]
        bottom.plot([p[0] for p in points], [p[1] for p in points], ".", markersize=2,
                    label=f"replica {index}")
    bottom.set_ylabel("resident memory, MB")
    bottom.set_xlabel("minutes")
    bottom.legend(loc="upper left")
    for at, label, _ in record.events:
        for axis in (top, bottom):
            axis.axvline(at / 60, color="grey", linewidth=0.6, linestyle=":")
        top.annotate(label, (at / 60, top.get_ylim()[1]), rotation=90, fontsize=7, va="top",
                     ha="right", color="dimgrey")
    failed = sum(n for (b, o), n in record.counts.items() if o == "failed")
    top.set_title(f"embedrt soak: {seconds / 60:.0f} min, failed valid requests: {failed}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--embedrt", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--clients", type=int, default=60)
    parser.add_argument("--slow-clients", type=int, default=3)
    parser.add_argument("--think-ms", type=float, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    cluster = Cluster(args)
    try:
        cluster.start()
        record = Record(started=time.monotonic())
        record.event("start", f"{args.clients} clients through nginx on 127.0.0.1:{cluster.nginx_http}")
        stop = threading.Event()
        channel = grpc.insecure_channel(f"127.0.0.1:{cluster.nginx_grpc}")
        threads = [threading.Thread(target=client, args=(i, args, cluster, record, channel, stop))
                   for i in range(args.clients)]
        threads.append(threading.Thread(target=sample_memory, args=(cluster, record, stop)))
        faults = threading.Thread(target=run_faults, args=(cluster, record, stop, args.seconds))
        for thread in threads + [faults]:
            thread.start()
        SPAWNER.serve(args.seconds)
        stop.set()
        while faults.is_alive():  # a fault under way may still start a process
            SPAWNER.serve(0.2)
        for thread in threads + [faults]:
            thread.join()
        record.event("end", f"{args.seconds:.0f} s")
    finally:
        cluster.stop()

    minutes = summarize(record, args.seconds)
    failed = sum(m["valid_failed"] for m in minutes)
    wrong = sum(m["invalid_wrong"] for m in minutes)
    kinds = {kind: {"requests": len(values),
                    "p50_ms": round(percentile(values, 0.5) * 1000, 1),
                    "p99_ms": round(percentile(values, 0.99) * 1000, 1)}
             for kind, values in sorted(record.by_kind.items())}
    (out / "soak.json").write_text(json.dumps({
        "seconds": args.seconds, "clients": args.clients, "minutes": minutes, "kinds": kinds,
        "events": record.events, "failures": record.failures, "retries": record.retries,
        "memory": record.memory,
    }, indent=1))
    draw(record, args.seconds, out / "soak.png")
    print("| minute | valid ok | valid failed | invalid refused (4xx) | invalid answered otherwise "
          "| vanished | retried | p50 ms | p99 ms | RSS of both replicas, max MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in minutes:
        print(f"| {m['minute']} | {m['valid_ok']} | {m['valid_failed']} | {m['invalid_refused']} "
              f"| {m['invalid_wrong']} | {m['vanished']} | {m['retried']} | {m['p50_ms']} "
              f"| {m['p99_ms']} | {m['rss_mb_max']} |")
    print("\n| protocol, model | valid requests answered | p50 ms | p99 ms |\n|---|---|---|---|")
    for kind, numbers in kinds.items():
        print(f"| {kind} | {numbers['requests']} | {numbers['p50_ms']} | {numbers['p99_ms']} |")
    print(f"\nfailed valid requests: {failed}; invalid requests answered other than 4xx: {wrong}")
    for failure in record.failures[:20]:
        print(f"  {failure}")
    broken = [text for _, label, text in record.events if label == "fault failed"]
    for text in broken:
        print(f"fault failed: {text}")
    return 1 if failed or wrong or broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
