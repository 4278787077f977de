"""Holds a running embedrt to its own OpenAPI document, and its embeddings to OpenAI's.

Usage: openapi_contract.py URL API_KEY ADMIN_KEY

- the document at /openapi.json is a valid OpenAPI 3.1 document (openapi-spec-validator);
- the `model` fields list exactly the models /v1/models lists, by kind;
- every documented request example validates against its schema, and the server answers it
  with 200 and a body that validates against the documented response;
- every other route's answers, and the errors of bad requests, validate against the documented
  responses for their status;
- /v1/embeddings answers validate against OpenAI's CreateEmbeddingResponse, and errors against
  its ErrorResponse (tests/data/openai-schemas.json).

Prints `ok` when everything holds.
"""

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

URL, API_KEY, ADMIN_KEY = sys.argv[1:4]
OPENAI = json.loads(
    (Path(__file__).parent.parent / "data" / "openai-schemas.json").read_text()
)


def call(method, path, body=None, key=API_KEY):
    """Sends a request; returns (status, headers, body as JSON, or as text when it is not)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(URL + path, data=data, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        status, headers, raw = error.code, error.headers, error.read()
    try:
        return status, headers, json.loads(raw)
    except ValueError:
        return status, headers, raw.decode()


def check(schema, instance, components, what):
    """Validates `instance` against `schema`, whose references point into `components`."""
    validator = Draft202012Validator(dict(schema, components=components))
    errors = sorted(validator.iter_errors(instance), key=str)
    assert not errors, f"{what}: {errors[0].message} at {list(errors[0].absolute_path)}"


status, _, document = call("GET", "/openapi.json", key=None)
assert status == 200, status
validate(document)
assert document["openapi"].startswith("3.1"), document["openapi"]
components = document["components"]
schemas = components["schemas"]

# The `model` fields list the served models of the route's kind.
_, _, listed = call("GET", "/v1/models")
names = {"embedding": [], "rerank": []}
for model in listed["data"]:
    names[model["kind"]] += [model["id"], *model["aliases"]]
for body, kind in [
    ("EmbeddingsBody", "embedding"),
    ("CohereRerankBody", "rerank"),
    ("TeiRerankBody", "rerank"),
]:
    documented = [n for n in schemas[body]["properties"]["model"]["enum"] if n is not None]
    assert sorted(documented) == sorted(names[kind]), (body, documented, names[kind])

# Every schema's example validates against it.
for name, schema in schemas.items():
    if "example" in schema:
        check({"$ref": f"#/components/schemas/{name}"}, schema["example"], components, f"{name}'s example")

# Every route's example runs as it is, and the answer is as documented.
operations = [
    (path, method, operation)
    for path, item in document["paths"].items()
    for method, operation in item.items()
]
assert {path for path, _, _ in operations} == {
    "/v1/embeddings",
    "/v1/tokenize",
    "/v1/models",
    "/v1/rerank",
    "/v2/rerank",
    "/rerank",
    "/health",
    "/ready",
    "/metrics",
    "/admin/reload",
}, [path for path, _, _ in operations]


def documented(operation, status):
    """The documented schema of `operation`'s answer with `status`, and its content type."""
    response = operation["responses"][str(status)]
    content_type, content = next(iter(response["content"].items()))
    return content["schema"], content_type


answers = 0
for path, method, operation in operations:
    key = ADMIN_KEY if path.startswith("/admin") else API_KEY
    body = None
    if "requestBody" in operation:
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        target = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        # An example of a body, or of one of the shapes it takes.
        examples = [target.get("example")] + [
            schemas[choice["$ref"].rsplit("/", 1)[-1]].get("example")
            for choice in target.get("oneOf", [])
            if "$ref" in choice
        ]
        examples = [e for e in examples if e is not None]
        assert examples, f"{path} documents no example"
        for body in examples:
            check(schema, body, components, f"the example of {path}")
            status, headers, answer = call(method.upper(), path, body, key)
            assert status == 200, (path, body, status, answer)
            schema_200, _ = documented(operation, 200)
            check(schema_200, answer, components, f"the answer of {path} to {body}")
            for header in operation["responses"]["200"].get("headers", {}):
                assert headers.get(header), (path, header)
            answers += 1
    else:
        status, headers, answer = call(method.upper(), path, None, key)
        assert status == 200, (path, status, answer)
        schema_200, content_type = documented(operation, 200)
        assert headers["content-type"].startswith(content_type), (path, headers["content-type"])
        check(schema_200, answer, components, f"the answer of {path}")
        answers += 1
assert answers >= 11, answers

# Every encoding of /v1/embeddings validates against the documented answer; OpenAI's own
# schema holds the float answers (it knows no other encoding).
embeddings = document["paths"]["/v1/embeddings"]["post"]
openai_schemas = OPENAI["components"]
for extra in [
    {},
    {"encoding_format": "base64"},
    {"embedding_type": "binary"},
    {"embedding_type": "ubinary"},
    {"dimensions": 8},
]:
    for given in ["one text", ["two", "texts"], [101, 2023, 102], [[101, 102], [101, 2023, 102]]]:
        body = {"model": names["embedding"][0], "input": given, **extra}
        check(embeddings["requestBody"]["content"]["application/json"]["schema"], body, components, str(body))
        status, _, answer = call("POST", "/v1/embeddings", body)
        assert status == 200, (body, answer)
        check(documented(embeddings, 200)[0], answer, components, f"the answer to {body}")
        if "encoding_format" not in extra and "embedding_type" not in extra:
            check(
                {"$ref": "#/components/schemas/CreateEmbeddingResponse"},
                answer,
                openai_schemas,
                f"OpenAI's CreateEmbeddingResponse, for {body}",
            )

# Errors: each status as documented, and OpenAI's ErrorResponse.
model = names["embedding"][0]
for path, body, key, expected in [
    ("/v1/embeddings", {"model": model}, API_KEY, 400),
    ("/v1/embeddings", {"model": model, "input": "x", "dimensions": 100000}, API_KEY, 400),
    ("/v1/embeddings", {"model": model, "input": 5}, API_KEY, 422),
    ("/v1/embeddings", {"model": "no-such-model", "input": "x"}, API_KEY, 404),
    ("/v1/embeddings", {"model": model, "input": ["x"] * 100000}, API_KEY, 413),
    ("/v1/embeddings", {"model": model, "input": "x"}, "wrong-key", 401),
    ("/v1/embeddings", {"model": model, "input": [10**9]}, API_KEY, 400),
    ("/v1/rerank", {"model": names["rerank"][0], "query": "q"}, API_KEY, 400),
    ("/v1/tokenize", {"model": model, "input": [1, 2]}, API_KEY, 422),
    ("/admin/reload", None, "wrong-key", 401),
]:
    status, _, answer = call("POST", path, body, key)
    assert status == expected, (path, body, status, answer)
    operation = document["paths"][path]["post"]
    check(documented(operation, expected)[0], answer, components, f"{path} {body} ({status})")
    check(
        {"$ref": "#/components/schemas/ErrorResponse"},
        answer,
        openai_schemas,
        f"OpenAI's ErrorResponse, for {path} {body}",
    )

print("ok")
