"""Schemathesis hooks for embedrt (SCHEMATHESIS_HOOKS=schemathesis_hooks).

The OpenAPI document states every rule of a request that JSON Schema can state. Two rules
depend on the model's tokenizer instead: with `"truncate": false` an input longer than the
model's `max_tokens` is refused, and a late-chunking chunk must have tokens of its own. The
generated bodies that break them are left out here, by asking the server's own tokenizer
(`/v1/tokenize`), so that every body sent is one the server must answer as the document says.

Reads EMBEDRT_URL and EMBEDRT_API_KEY.
"""

import json
import os
import urllib.error
import urllib.request

import schemathesis

URL = os.environ["EMBEDRT_URL"]
KEY = os.environ["EMBEDRT_API_KEY"]


def post(path, body):
    request = urllib.request.Request(
        URL + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, None


def limits():
    """Each model's (name or alias) longest input in tokens."""
    request = urllib.request.Request(URL + "/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        models = json.load(response)["data"]
    return {name: m["max_tokens"] for m in models for name in [m["id"], *m["aliases"]]}


MAX_TOKENS = limits()


def counts(model, texts):
    """The token count of each text, special tokens included (None: it cannot be tokenized)."""
    status, answer = post("/v1/tokenize", {"model": model, "input": texts, "truncate": True})
    return [entry["count"] for entry in answer["data"]] if status == 200 else None


def texts_of(value):
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return []


def token_arrays_of(value):
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return value
    return []


def tokens_fit(body, max_tokens):
    """Whether every input of an embeddings body fits `max_tokens` without cutting."""
    model, inputs = body.get("model"), body.get("input")
    texts = texts_of(inputs)
    if texts:
        found = counts(model, texts)
        if found is None or max(found) > max_tokens:
            return False
    return all(len(ids) <= max_tokens for ids in token_arrays_of(inputs))


def chunks_have_tokens(body):
    """Whether every late-chunking chunk has tokens besides the special ones."""
    texts = texts_of(body.get("input"))
    if not texts:
        return True
    found = counts(body.get("model"), ["", *texts])
    return found is not None and all(count > found[0] for count in found[1:])


def pairs_fit(body, max_tokens):
    """Whether every (query, document) pair of a rerank body fits `max_tokens` uncut."""
    documents = body.get("documents", body.get("texts"))
    query = body.get("query")
    if not isinstance(query, str) or not isinstance(documents, list):
        return True
    texts = [d if isinstance(d, str) else d.get("text") if isinstance(d, dict) else None for d in documents]
    if not all(isinstance(t, str) for t in texts):
        return True
    found = counts(body.get("model"), [query, *texts])
    return found is not None and all(found[0] + count <= max_tokens for count in found[1:])


@schemathesis.hook
def filter_body(context, body):
    if not isinstance(body, dict):
        return True
    path = context.operation.path
    model = body.get("model")
    max_tokens = (isinstance(model, str) and MAX_TOKENS.get(model)) or min(MAX_TOKENS.values())
    if path == "/v1/embeddings":
        if body.get("late_chunking") is True and not chunks_have_tokens(body):
            return False
        if body.get("truncate") is False and not tokens_fit(body, max_tokens):
            return False
    if path == "/v1/tokenize" and body.get("truncate") is False:
        found = counts(body.get("model"), texts_of(body.get("input")))
        if found and max(found) > max_tokens:
            return False
    if "rerank" in path and body.get("truncate") is False and not pairs_fit(body, max_tokens):
        return False
    return True
