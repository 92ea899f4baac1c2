"""Calls sglangmux through the official Python `openai` SDK, for test/openai-python.test.ts.

argv[1] is JSON: {"client": {OpenAI(...) keyword arguments}, "calls": [{"op": "chat.completions.create",
"args": {...}, "options": {with_options(...) keyword arguments, optional}}, ...]}. The calls run in
order on one client; stdout gets one JSON line, a list
with, for each call, {"result": ...} (a streamed call: the list of its chunks; a paginated
list: its items) or {"error": {...}} describing the exception the SDK raised (its class and
base classes, status, message, body, and the chunks received before it).
"""

import json
import sys

import openai


def dump(value):
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def describe(err, chunks):
    return {
        "classes": [c.__name__ for c in type(err).__mro__],
        "status": getattr(err, "status_code", None),
        "message": getattr(err, "message", str(err)),
        "body": getattr(err, "body", None),
        "code": getattr(err, "code", None),
        "retries": getattr(getattr(err, "request", None), "headers", {}).get("x-stainless-retry-count"),
        "chunks": chunks,
    }


def call(client, op, args, options):
    target = client.with_options(**options) if options else client
    for name in op.split("."):
        target = getattr(target, name)
    chunks = []
    try:
        answer = target(**args)
        if isinstance(answer, openai.Stream) or op == "models.list":
            for item in answer:
                chunks.append(dump(item))
            return {"result": chunks}
        return {"result": dump(answer)}
    except openai.OpenAIError as err:
        return {"error": describe(err, chunks)}


def main():
    spec = json.loads(sys.argv[1])
    client = openai.OpenAI(**spec["client"])
    print(json.dumps([call(client, c["op"], c.get("args", {}), c.get("options")) for c in spec["calls"]]))


if __name__ == "__main__":
    main()
