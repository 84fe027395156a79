"""Runs InvokeAgentRuntimeCommand cases through boto3 against berth.

Usage: command_client.py ENDPOINT < cases.json
Each case is {"name", "arn", "session", "command", "timeout"?}; the report
maps each name to the events boto3 decoded from the stream, in order, or
the error it raised (before or during the stream).
"""

import json
import sys

import boto3
import botocore.exceptions


def run(client, case):
    kw = {
        "agentRuntimeArn": case["arn"],
        "runtimeSessionId": case["session"],
        "body": {"command": case["command"]},
    }
    if "timeout" in case:
        kw["body"]["timeout"] = case["timeout"]
    out = {"events": []}
    try:
        resp = client.invoke_agent_runtime_command(**kw)
        out["session"] = resp.get("runtimeSessionId")
        out["content_type"] = resp.get("contentType")
        for event in resp["stream"]:
            out["events"].append(event)
    except botocore.exceptions.EventStreamError as e:
        out["stream_error"] = e.response["Error"]["Code"]
    except botocore.exceptions.ClientError as e:
        out["error"] = e.response["Error"]["Code"]
        out["status"] = e.response["ResponseMetadata"]["HTTPStatusCode"]
    return out


def main():
    client = boto3.client(
        "bedrock-agentcore",
        endpoint_url=sys.argv[1],
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    cases = json.load(sys.stdin)
    print(json.dumps({c["name"]: run(client, c) for c in cases}))


if __name__ == "__main__":
    main()
