"""Drives a running embedrt server with the official `openai` Python client, unchanged.

Usage: openai_client.py BASE_URL MODEL EXPECTED_JSON

Checks the client's default (base64) and float encodings against sentence-transformers' vectors,
`dimensions`, token-id input, and that errors surface as the client's own exception types.
Prints "ok" and exits 0 when everything holds.
"""

import json
import math
import sys

import openai
from vectors import cosine


def main():
    base_url, model, expected_path = sys.argv[1:4]
    expected = json.load(open(expected_path))
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)

    for encoding in (openai.NOT_GIVEN, "float"):
        response = client.embeddings.create(model=model, input=expected["texts"], encoding_format=encoding)
        assert response.model == model, response.model
        assert len(response.data) == len(expected["texts"])
        for i, item in enumerate(response.data):
            assert item.index == i
            similarity = cosine(item.embedding, expected["embeddings"][i])
            assert similarity >= 0.9999, (encoding, i, similarity)
        tokens = sum(len(ids) for ids in expected["token_ids"])
        assert response.usage.prompt_tokens == tokens, response.usage

    short = client.embeddings.create(model=model, input="matryoshka", dimensions=128)
    assert len(short.data[0].embedding) == 128
    assert abs(math.sqrt(sum(x * x for x in short.data[0].embedding)) - 1.0) < 1e-5

    ids = client.embeddings.create(model=model, input=[expected["token_ids"][0]])
    assert cosine(ids.data[0].embedding, expected["embeddings"][0]) >= 0.9999

    try:
        client.embeddings.create(model="no-such-model", input="x")
        raise AssertionError("an unknown model must fail")
    except openai.NotFoundError as error:
        assert error.status_code == 404
        assert error.body["code"] == "model_not_found", error.body
    try:
        client.embeddings.create(model=model, input="x", dimensions=100000)
        raise AssertionError("bad dimensions must fail")
    except openai.BadRequestError as error:
        assert error.body["param"] == "dimensions", error.body
    print("ok")


if __name__ == "__main__":
    main()
