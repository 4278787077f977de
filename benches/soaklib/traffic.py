"""The soak's traffic: what each client sends (HTTP or gRPC, texts or token ids, jina's tasks,
sizes and encodings, invalid requests, slow uploads, callers that vanish), how it checks each
answer, and what it retries."""

import base64
import http.client
import json
import math
import random
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

ROOT = Path(__file__).resolve().parents[2]
SENTENCES = (ROOT / "benches" / "data" / "sentences.txt").read_text().splitlines()
JINA_TASKS = ["retrieval.query", "retrieval.passage", "separation", "classification", "text-matching"]
JINA_SIZES = [8, 16, 32]


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


# Errors a client retries, as HTTP clients and gRPC's retry policy do: a keep-alive connection
# that the proxy closed before the request reached it (nginx closes its idle ones when it
# reloads), gRPC's UNAVAILABLE (a replica that died under the call or is still loading), and a
# gRPC stream the proxy reset because its replica died under the call (grpc-core reports the
# RST_STREAM as INTERNAL). Embedding calls are idempotent, so a retry is safe.
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
            if code == grpc.StatusCode.INTERNAL and "RST_STREAM" in (error.details() or ""):
                raise Retry(f"gRPC stream reset by the proxy: {error.details()}") from error
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
