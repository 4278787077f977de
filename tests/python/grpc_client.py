"""Drives a running embedrt server's gRPC API from Python, with stubs generated from the proto.

Usage: grpc_client.py ADDRESS MODEL EXPECTED_JSON PROTO_ROOT STUB_DIR

Generates the embedrt.v1 stubs with grpcio-tools into STUB_DIR, then checks `Embed` (also
gzip-compressed) and `EmbedStream` against sentence-transformers' vectors, an error status, the standard health
service (grpcio-health-checking) and reflection-based service listing (grpcio-reflection).
Prints "ok" and exits 0 when everything holds.
"""

import json
import os
import sys

import grpc
from grpc_tools import protoc

from vectors import cosine


def generate_stubs(proto_root, stub_dir):
    os.makedirs(stub_dir, exist_ok=True)
    include = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    status = protoc.main([
        "grpc_tools.protoc",
        f"-I{proto_root}",
        f"-I{include}",
        f"--python_out={stub_dir}",
        f"--grpc_python_out={stub_dir}",
        "embedrt/v1/embedrt.proto",
    ])
    assert status == 0, f"protoc failed with {status}"
    sys.path.insert(0, stub_dir)


def check_embed(stub, pb, model, expected):
    response = stub.Embed(pb.EmbedRequest(model=model, texts=expected["texts"]))
    assert response.model == model, response.model
    assert len(response.embeddings) == len(expected["texts"])
    for i, embedding in enumerate(response.embeddings):
        similarity = cosine(embedding.values, expected["embeddings"][i])
        assert similarity >= 0.9999, (i, similarity)
    tokens = sum(len(ids) for ids in expected["token_ids"])
    assert response.usage.prompt_tokens == tokens, response.usage

    gzipped = stub.Embed(pb.EmbedRequest(model=model, texts=expected["texts"][:1]), compression=grpc.Compression.Gzip)
    assert cosine(gzipped.embeddings[0].values, expected["embeddings"][0]) >= 0.9999

    ids = stub.Embed(pb.EmbedRequest(model=model, tokens=[pb.TokenIds(ids=expected["token_ids"][0])]))
    assert cosine(ids.embeddings[0].values, expected["embeddings"][0]) >= 0.9999

    bits = stub.Embed(pb.EmbedRequest(model=model, texts=expected["texts"][:1], embedding_type=pb.EMBEDDING_TYPE_UBINARY))
    assert len(bits.embeddings[0].bits) == len(expected["embeddings"][0]) // 8

    try:
        stub.Embed(pb.EmbedRequest(model="no-such-model", texts=["x"]))
        raise AssertionError("an unknown model must fail")
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.NOT_FOUND, error


def check_stream(stub, pb, model, expected):
    texts = expected["texts"]
    messages = [
        pb.EmbedStreamRequest(id=i, request=pb.EmbedRequest(model=model, texts=[texts[i % len(texts)]]))
        for i in range(200)
    ]
    messages.append(pb.EmbedStreamRequest(id=999, request=pb.EmbedRequest(model=model, texts=[])))
    seen = set()
    for answer in stub.EmbedStream(iter(messages)):
        assert answer.id not in seen, answer.id
        seen.add(answer.id)
        if answer.id == 999:
            assert answer.WhichOneof("outcome") == "error", answer
            assert answer.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], answer.error
            continue
        vector = answer.response.embeddings[0].values
        similarity = cosine(vector, expected["embeddings"][answer.id % len(texts)])
        assert similarity >= 0.9999, (answer.id, similarity)
    assert seen == set(range(200)) | {999}, len(seen)


def check_standard_services(channel, model):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", model):
        status = health.Check(health_pb2.HealthCheckRequest(service=service)).status
        assert status == health_pb2.HealthCheckResponse.SERVING, (service, status)

    database = ProtoReflectionDescriptorDatabase(channel)
    services = set(database.get_services())
    assert {"embedrt.v1.Embedder", "grpc.health.v1.Health"} <= services, services
    embed = database.FindFileContainingSymbol("embedrt.v1.Embedder")
    assert embed.package == "embedrt.v1", embed.package


def main():
    address, model, expected_path, proto_root, stub_dir = sys.argv[1:6]
    expected = json.load(open(expected_path))
    generate_stubs(proto_root, stub_dir)
    from embedrt.v1 import embedrt_pb2 as pb
    from embedrt.v1 import embedrt_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        stub = embedrt_pb2_grpc.EmbedderStub(channel)
        check_embed(stub, pb, model, expected)
        check_stream(stub, pb, model, expected)
        check_standard_services(channel, model)
    print("ok")


if __name__ == "__main__":
    main()
