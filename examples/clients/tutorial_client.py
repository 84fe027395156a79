#!/usr/bin/env python3
"""The client side of AgentCore's "runtime context and session management"
tutorial, with plain boto3, pointed at berth.

Nothing here knows about berth. The only change from talking to AWS is the
endpoint, given one of the two ways boto3 supports:

    export AWS_ENDPOINT_URL_BEDROCK_AGENTCORE=http://127.0.0.1:8787
    python3 tutorial_client.py --arn arn:aws:bedrock-agentcore:us-east-1:123456789012:runtime/tutorial

    python3 tutorial_client.py --endpoint-url http://127.0.0.1:8787 --arn ...

boto3 signs with the usual AWS credentials: any values do against a berth with
authentication off (AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x); with it on, a
key from `berth credentials create NAME`.

It runs the tutorial's conversation: in one session, the weather, "How much
is 2X5?" and "and that plus 34?" (the last one streamed, read as Server-Sent
Events the way the starter toolkit reads them); then "and plus 10?" in a new
session, which must not know the earlier result; then StopRuntimeSession,
twice, the second time expecting ResourceNotFoundException.

It prints what happened as it goes on stderr and, with --json, a report of
every exchange on stdout (berth's compatibility tests read that).
"""

import argparse
import json
import sys
import uuid
from urllib.parse import urlsplit

import boto3


def log(*parts):
    print(*parts, file=sys.stderr, flush=True)


def invoke(client, arn, session_id, payload, accept=None):
    """Invoke the agent and read the reply the way the tutorial does."""
    kwargs = dict(
        agentRuntimeArn=arn,
        qualifier="DEFAULT",
        runtimeSessionId=session_id,
        payload=json.dumps(payload),
    )
    if accept:
        kwargs["accept"] = accept
    resp = client.invoke_agent_runtime(**kwargs)
    content_type = resp.get("contentType", "")
    exchange = {
        "payload": payload,
        "status_code": resp.get("statusCode"),
        "content_type": content_type,
        "runtime_session_id": resp.get("runtimeSessionId"),
    }
    if "text/event-stream" in content_type:
        # As the starter toolkit does: line by line, keeping "data: " lines.
        events = []
        for line in resp["response"].iter_lines(chunk_size=1):
            if not line:
                continue
            line = line.decode("utf-8")
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
        exchange["events"] = events
        # This agent's last event carries the whole reply.
        exchange["reply"] = next((e["reply"] for e in reversed(events) if isinstance(e, dict) and "reply" in e), None)
        text = "".join(e.get("text", "") for e in events if isinstance(e, dict))
        log(f"  [{len(events)} events] {text}")
    else:
        # As the tutorial does.
        exchange["reply"] = json.loads(resp["response"].read())
        log(f"  {exchange['reply'].get('answer') if isinstance(exchange['reply'], dict) else exchange['reply']}")
    return exchange


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arn", required=True, help="the agent runtime's ARN (or its ID, or its name on berth)")
    parser.add_argument("--endpoint-url", help="berth's URL; default: AWS_ENDPOINT_URL_BEDROCK_AGENTCORE")
    parser.add_argument("--region", default=None, help="AWS region (default: the usual boto3 chain)")
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    args = parser.parse_args()

    kwargs = {}
    if args.endpoint_url:
        kwargs["endpoint_url"] = args.endpoint_url
    if args.region:
        kwargs["region_name"] = args.region
    client = boto3.client("bedrock-agentcore", **kwargs)
    log(f"boto3 {boto3.__version__} -> {client.meta.endpoint_url}")

    # Note where requests really go, wherever the endpoint came from.
    sent_to = []

    def note_endpoint(request, **_):
        url = urlsplit(request.url)
        origin = f"{url.scheme}://{url.netloc}"
        if origin not in sent_to:
            sent_to.append(origin)

    client.meta.events.register("before-send.bedrock-agentcore", note_endpoint)

    report = {"client": f"boto3 {boto3.__version__}", "steps": [], "sent_to": sent_to}
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    conversation = [
        ("weather", first, {"prompt": "How is the weather outside?", "user_id": "1"}, None),
        ("multiply", first, {"prompt": "How much is 2X5?", "user_id": "1"}, None),
        # Streamed, with the Accept header the starter toolkit sends.
        ("add", first, {"prompt": "and that plus 34?", "user_id": "1", "stream": True},
         "text/event-stream, application/json"),
        ("new session", second, {"prompt": "and plus 10?", "user_id": "1"}, None),
    ]
    for name, session_id, payload, accept in conversation:
        log(f"[{name}] session {session_id}: {payload['prompt']}")
        step = invoke(client, args.arn, session_id, payload, accept)
        step["name"] = name
        step["session"] = session_id
        report["steps"].append(step)

    log(f"[stop] session {first}")
    stop = client.stop_runtime_session(agentRuntimeArn=args.arn, qualifier="DEFAULT", runtimeSessionId=first)
    report["stop"] = {
        "status_code": stop.get("statusCode"),
        "runtime_session_id": stop.get("runtimeSessionId"),
    }
    log(f"[stop again] session {first}")
    try:
        client.stop_runtime_session(agentRuntimeArn=args.arn, qualifier="DEFAULT", runtimeSessionId=first)
        report["second_stop"] = {"error": None}
        log("  stopped again?! expected ResourceNotFoundException")
    except client.exceptions.ResourceNotFoundException as e:
        report["second_stop"] = {
            "error": e.response["Error"]["Code"],
            "status_code": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "message": e.response["Error"].get("Message", ""),
        }
        log(f"  ResourceNotFoundException: {report['second_stop']['message']}")

    log(f"requests went to {', '.join(sent_to)}")
    if args.json:
        json.dump(report, sys.stdout)
        print()


if __name__ == "__main__":
    main()
