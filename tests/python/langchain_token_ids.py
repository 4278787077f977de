"""LangChain's OpenAIEmbeddings, left at its defaults (check_embedding_ctx_length=True: texts go
out as tiktoken's cl100k_base token ids), against embedrt.

Usage: langchain_token_ids.py URL CL100K_MODEL OWN_IDS_MODEL

- CL100K_MODEL (configured with `token_ids = "cl100k_base"`): the vectors LangChain gets are those
  of the same texts sent as strings (cosine >= 0.9999), and LangChain did send token ids;
- OWN_IDS_MODEL (the default, `token_ids = "model"`): the out-of-vocabulary ids are refused
  with a 400 that names the option.

tiktoken reads its encoding from TIKTOKEN_CACHE_DIR (the test puts tiktoken-rs's copy there: no
download). Prints `ok` when everything holds.
"""

import json
import math
import sys
import urllib.request

import openai
from langchain_openai import OpenAIEmbeddings

URL, CL100K_MODEL, OWN_IDS_MODEL = sys.argv[1:4]
TEXTS = [
    "The food was delicious and the waiter was friendly.",
    "Machine learning models turn text into vectors.",
    "Café crème, naïve résumé, Zürich and São Paulo.",
    "東京は日本の首都です。",
    "Emoji survive the round trip: 🚀🎉",
    "",
]


def embed_as_strings(model, texts):
    request = urllib.request.Request(
        URL + "/v1/embeddings",
        data=json.dumps({"model": model, "input": texts}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return [d["embedding"] for d in json.load(response)["data"]]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def spied(model):
    """OpenAIEmbeddings for `model` at its defaults, and the inputs its client sends."""
    embeddings = OpenAIEmbeddings(model=model, base_url=URL + "/v1", api_key="unused")
    assert embeddings.check_embedding_ctx_length and embeddings.tiktoken_enabled
    sent = []
    create = embeddings.client.create

    def recording(**kwargs):
        sent.append(kwargs["input"])
        return create(**kwargs)

    embeddings.client.create = recording
    return embeddings, sent


embeddings, sent = spied(CL100K_MODEL)
got = embeddings.embed_documents(TEXTS)
query = embeddings.embed_query(TEXTS[0])
token_batches = [batch for batch in sent if isinstance(batch, list)]
assert token_batches and all(
    isinstance(ids, list) and all(isinstance(i, int) for i in ids)
    for batch in token_batches
    for ids in batch
), f"LangChain sent no token ids: {sent!r:.300}"
assert max(i for batch in token_batches for ids in batch for i in ids) > 30522, (
    "the texts' cl100k_base ids should reach past a BERT vocabulary"
)

expected = embed_as_strings(CL100K_MODEL, TEXTS)
for text, a, b in zip(TEXTS, got, expected):
    assert cosine(a, b) >= 0.9999, (text, cosine(a, b))
assert cosine(query, expected[0]) >= 0.9999

# A model that reads ids as its own refuses them, and says which option reads OpenAI's.
embeddings, _ = spied(OWN_IDS_MODEL)
try:
    embeddings.embed_documents(TEXTS)
    raise AssertionError("out-of-vocabulary ids were accepted")
except openai.BadRequestError as error:
    assert error.status_code == 400
    assert 'token_ids = "cl100k_base"' in str(error), str(error)

print("ok")
