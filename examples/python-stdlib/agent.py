#!/usr/bin/env python3
"""The tutorial agent in Python's standard library alone: no pip, no SDK.

It speaks AgentCore's agent contract directly, which is all berth (or
AgentCore) needs from an agent in any language:

- listen on 0.0.0.0:$PORT (8080 when PORT is unset, as AgentCore uses);
- GET /ping answers {"status": "Healthy", "time_of_last_update": <unix s>};
- POST /invocations gets the caller's payload as it was sent, and the
  session's ID in the X-Amzn-Bedrock-AgentCore-Runtime-Session-Id header;
  it answers JSON, or Server-Sent Events (text/event-stream) to stream.

One process serves one session, so module-level state is the session's
memory, and no other session ever sees it. This server is single-threaded
on purpose: while it answers a call it cannot answer /ping, and berth
does not count that against it.
"""

import json
import os
import re
import secrets
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

USER_NAMES = {"1": "Maira", "2": "Mani", "3": "Mark", "4": "Ishan", "5": "Dhawal"}
SESSION_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id"
REQUEST_HEADER = "X-Amzn-Bedrock-AgentCore-Runtime-Request-Id"
CUSTOM_PREFIX = "x-amzn-bedrock-agentcore-runtime-custom-"

INSTANCE = secrets.token_hex(8)  # tells processes apart across pid namespaces
STARTED = int(time.time())
prompts = []  # this session's conversation
last = None  # the last arithmetic result

OPERATORS = {"+": "+", "plus": "+", "add": "+", "-": "-", "minus": "-", "subtract": "-",
             "*": "*", "x": "*", "×": "*", "times": "*", "multiplied": "*",
             "/": "/", "÷": "/", "divided": "/", "over": "/"}
PREVIOUS = {"that", "it", "result"}
TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+|[+\-*/×÷]")


def calculate(prompt):
    """Evaluates the arithmetic in a prompt; "that" is the previous result."""
    tokens = []
    for word in TOKEN.findall(prompt.lower()):
        if word[0].isdigit():
            tokens.append(float(word))
        elif word in OPERATORS:
            tokens.append(OPERATORS[word])
        elif word in PREVIOUS:
            if last is None:
                raise LookupError("no previous result")
            tokens.append(last)
    # numbers and operators must alternate, starting with a number
    if len(tokens) < 3 or not isinstance(tokens[0], float):
        if tokens and isinstance(tokens[0], str) and last is not None:
            tokens.insert(0, last)  # "plus 10" continues from the last result
        else:
            return None
    terms, ops = [tokens[0]], []
    for op, num in zip(tokens[1::2], tokens[2::2]):
        if not isinstance(op, str) or not isinstance(num, float):
            return None
        if op in "*/":
            if op == "/" and num == 0:
                raise ZeroDivisionError
            terms[-1] = terms[-1] * num if op == "*" else terms[-1] / num
        else:
            terms.append(num)
            ops.append(op)
    value = terms[0]
    for op, num in zip(ops, terms[1:]):
        value = value + num if op == "+" else value - num
    return value


def answer(prompt, name):
    global last
    parts = ["Hello %s!" % name if name else "Hello!"]
    if "weather" in prompt.lower():
        parts.append("It's sunny outside.")
    result = None
    try:
        result = calculate(prompt)
    except LookupError:
        parts.append("I have no previous result in this session to continue from.")
    except ZeroDivisionError:
        parts.append("I can't divide by zero.")
    if result is not None:
        last = result
        parts.append("The result is %g." % result)
    elif len(parts) == 1:
        parts.append("You said %r. I remember %d earlier prompt(s)." % (prompt, len(prompts) - 1))
    return " ".join(parts), result


class Agent(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so this one-at-a-time server
    # never sits on an idle keep-alive connection while a ping waits.
    protocol_version = "HTTP/1.0"

    def do_GET(self):
        if self.path != "/ping":
            return self.reply(404, {"error": "not found"})
        self.reply(200, {"status": "Healthy", "time_of_last_update": STARTED})

    def do_POST(self):
        if self.path != "/invocations":
            return self.reply(404, {"error": "not found"})
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            payload = json.loads(raw)
            assert isinstance(payload, dict)
        except (ValueError, AssertionError):
            return self.reply(400, {"error": "payload must be a JSON object"})
        if payload.get("sleep"):  # a slow call, to show berth waits for it
            time.sleep(float(payload["sleep"]))
        user_id = str(payload.get("user_id", ""))
        name = USER_NAMES.get(user_id, "")
        prompt = str(payload.get("prompt", ""))
        prompts.append(prompt)
        text, result = answer(prompt, name)
        reply = {
            "session_id": self.headers.get(SESSION_HEADER, ""),
            "request_id": self.headers.get(REQUEST_HEADER, ""),
            "user_id": user_id,
            "user_name": name,
            "answer": text,
            "turn": len(prompts),
            "remembered": list(prompts),
            "payload": payload,
            "custom_headers": {k: v for k, v in self.headers.items() if k.lower().startswith(CUSTOM_PREFIX)},
            "pid": os.getpid(),
            "instance": INSTANCE,
        }
        if result is not None:
            reply["result"] = result
        if not payload.get("stream"):
            return self.reply(200, reply)
        # Server-Sent Events: a delta per word, then the whole reply.
        # The body ends when the connection closes.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in re.findall(r"\S+\s*", text):
            self.event({"type": "delta", "text": word})
        self.event({"type": "done", "reply": reply})

    def event(self, event):
        self.wfile.write(("data: " + json.dumps(event) + "\n\n").encode())
        self.wfile.flush()

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):  # one line per call on stderr
        print("agent:", fmt % args, flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8080"))
    HTTPServer(("0.0.0.0", port), Agent).serve_forever()
