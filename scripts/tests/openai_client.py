#!/usr/bin/env python3
"""The official OpenAI Python client, unchanged, against a Tributary node.

Usage: openai_client.py BASE_URL API_KEY MODEL
Exits 0 when every check passes; 3 when the `openai` package is missing
(the Rust test that runs this script then skips with that message).
"""
import sys

try:
    import openai
except ImportError:
    print("the `openai` Python package is not installed (pip install openai)", file=sys.stderr)
    sys.exit(3)

base, key, model = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0)

# 1. List models: the base model is there.
ids = [m.id for m in client.models.list().data]
assert model in ids, ids

# 2. Chat completion, with usage and the receipt as extra fields.
r = client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hello"}], max_tokens=5, temperature=0
)
assert r.object == "chat.completion", r
assert r.choices[0].message.role == "assistant"
assert isinstance(r.choices[0].message.content, str)
assert r.usage.completion_tokens >= 1 and r.usage.prompt_tokens >= 1
extra = r.model_extra or {}
assert "receipt_id" in extra and "fee" in extra, extra

# 3. Streaming chat: deltas, then a final chunk with usage; the client
# stops at `data: [DONE]`.
text, final = "", None
for chunk in client.chat.completions.create(
    model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5, stream=True
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage is not None:
        final = chunk
assert final is not None and final.usage.completion_tokens >= 1, final

# 4. Legacy completions.
c = client.completions.create(model=model, prompt="once upon a time", max_tokens=4)
assert c.object == "text_completion" and c.usage.total_tokens >= 1

# 5. Errors map to the client's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown model accepted")
except openai.NotFoundError:
    pass
bad = openai.OpenAI(base_url=base + "/v1", api_key="trib-sk-wrong", max_retries=0)
try:
    bad.models.list()  # listing is public
    bad.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("unknown key accepted")
except openai.AuthenticationError:
    pass

print("openai client checks passed:", len(ids), "models; streamed", repr(text))
