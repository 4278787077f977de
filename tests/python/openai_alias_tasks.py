"""Chooses tasks by model name with the official `openai` Python client, which cannot send one.

Usage: openai_alias_tasks.py BASE_URL E5_EXPECTED_JSON JINA_EXPECTED_JSON

The server serves multilingual-e5 as `e5`, aliased `e5-query` (task `query`) and `e5-passage`
(task `passage`), and jina-embeddings-v3 as `jina`, aliased `jina-query` (task
`retrieval.query`). Each name must give the vectors of its task. Prints "ok" and exits 0 when
everything holds.
"""

import json
import sys

import openai
from vectors import assert_close


def check(client, model, texts, want, label):
    response = client.embeddings.create(model=model, input=texts)
    assert len(response.data) == len(want), (label, len(response.data))
    for i, item in enumerate(response.data):
        assert_close(item.embedding, want[i], (label, i))


def main():
    base_url, e5_path, jina_path = sys.argv[1:4]
    client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)

    e5 = json.load(open(e5_path))
    cases = {case["prompt_name"]: case for case in e5["cases"]}
    check(client, "e5", e5["texts"], cases[None]["embeddings"], "e5 (no prompt)")
    check(client, "e5-query", e5["texts"], cases["query"]["embeddings"], "e5-query")
    check(client, "e5-passage", e5["texts"], cases["passage"]["embeddings"], "e5-passage")

    jina = json.load(open(jina_path))
    query = next(
        case
        for case in jina["cases"]
        if case["task"] == "retrieval.query" and case["dimensions"] == 32 and case.get("normalized") is None
    )
    check(client, "jina-query", jina["texts"], query["embeddings"], "jina-query")
    matching = next(
        case
        for case in jina["cases"]
        if case["task"] == "text-matching" and case["dimensions"] == 32 and case.get("normalized") is None
    )
    check(client, "jina", jina["texts"], matching["embeddings"], "jina (its default task)")
    print("ok")


if __name__ == "__main__":
    main()
