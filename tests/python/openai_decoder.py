"""Drives a Qwen3-Embedding model (a decoder) with the official `openai` Python client.

Usage: openai_decoder.py BASE_URL MODEL QUERY_ALIAS EXPECTED_JSON

The server serves the qwen3-embedding-tiny fixture as MODEL, with QUERY_ALIAS an alias whose
requests get the `query` task. Checks, against sentence-transformers' vectors from a left-padded
batch: every prompt case with all texts in one request (1 to 127 tokens together), the token ids
`/v1/tokenize` reports (the appended `<|endoftext|>` included), every text of every case alone from
many concurrent clients, `dimensions`, and the query task by name and by the alias. Prints "ok"
and exits 0 when everything holds.
"""

import json
import math
import random
import sys
from concurrent.futures import ThreadPoolExecutor

import openai
from vectors import assert_close


def task_of(case):
    """The request's extra body naming the case's prompt as the task (none without a prompt)."""
    return {"task": case["prompt_name"]} if case["prompt_name"] else None


def embed(client, model, texts, case, **options):
    return client.embeddings.create(model=model, input=texts, extra_body=task_of(case), **options)


def main():
    base_url, model, query_alias, expected_path = sys.argv[1:5]
    expected = json.load(open(expected_path))
    texts = expected["texts"]
    cases = {case["prompt_name"]: case for case in expected["cases"]}
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)

    for case in expected["cases"]:
        label = f"{model} {case['prompt_name']}"
        response = embed(client, model, texts, case)
        assert response.model == model, response.model
        for i, item in enumerate(response.data):
            assert item.index == i
            assert_close(item.embedding, case["embeddings"][i], f"{label} text {i}")
        tokens = sum(len(ids) for ids in case["token_ids"])
        assert response.usage.prompt_tokens == tokens, (label, response.usage)

        # /v1/tokenize is embedrt's, not OpenAI's: the client's own transport posts it.
        body = {"model": model, "input": texts}
        body.update(task_of(case) or {})
        tokenized = client.post("/tokenize", body=body, cast_to=object)
        ids = [item["tokens"] for item in tokenized["data"]]
        assert ids == case["token_ids"], (label, ids)

    # Every text of every case alone, shuffled, from many clients at once: each request is
    # batched with strangers of other lengths and prompts and still gets its own vector.
    jobs = [(case, i) for case in expected["cases"] for i in range(len(texts))] * 2
    random.Random(0).shuffle(jobs)

    def one(job):
        case, i = job
        got = embed(client, model, texts[i], case).data[0].embedding
        assert_close(got, case["embeddings"][i], f"{model} {case['prompt_name']} text {i} alone")

    with ThreadPoolExecutor(max_workers=24) as pool:
        list(pool.map(one, jobs))

    query = cases["query"]
    for dimensions in (16, 32):
        response = embed(client, model, texts, query, dimensions=dimensions)
        for i, item in enumerate(response.data):
            want = query["embeddings"][i][:dimensions]
            norm = math.sqrt(sum(x * x for x in want))
            assert_close(item.embedding, [x / norm for x in want], f"{model} query at {dimensions} text {i}")

    by_alias = client.embeddings.create(model=query_alias, input=texts)
    for i, item in enumerate(by_alias.data):
        assert_close(item.embedding, query["embeddings"][i], f"{query_alias} text {i}")

    try:
        embed(client, model, "x", query, dimensions=33)
        raise AssertionError("dimensions above the hidden size must fail")
    except openai.BadRequestError as error:
        assert error.body["param"] == "dimensions", error.body
    print("ok")


if __name__ == "__main__":
    main()
