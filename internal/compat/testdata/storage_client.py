"""Drives session storage through boto3 against berth.

Usage: storage_client.py ENDPOINT < plan.json
The plan is {"name", "prefix", "entryPoint", "mountPath", "steps"}: the
script creates a runtime from the code under "prefix" with that session
storage through bedrock-agentcore-control, waits for it to be READY, reads
it back with get_agent_runtime, then runs each step in order: {"name",
"session", "stop": true} calls stop_runtime_session, any other step
invokes the session with "payload". The report holds the created runtime,
what get_agent_runtime echoed, and each step's decoded answer or error.
"""

import json
import sys
import time

import boto3
import botocore.config
import botocore.exceptions


def error(e):
    return {
        "error": e.response["Error"]["Code"],
        "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
        "message": e.response["Error"].get("Message", ""),
    }


def step(data, arn, s):
    try:
        if s.get("stop"):
            out = data.stop_runtime_session(agentRuntimeArn=arn, runtimeSessionId=s["session"], qualifier="DEFAULT")
            return {"result": {"runtimeSessionId": out.get("runtimeSessionId")}}
        # The tutorial's call: no contentType.
        out = data.invoke_agent_runtime(agentRuntimeArn=arn, runtimeSessionId=s["session"],
                                        payload=json.dumps(s["payload"]), qualifier="DEFAULT")
        return {"result": json.loads(out["response"].read())}
    except botocore.exceptions.ClientError as e:
        return error(e)


def main():
    endpoint = sys.argv[1]
    plan = json.load(sys.stdin)
    cfg = botocore.config.Config(retries={"max_attempts": 1})
    ctl = boto3.client("bedrock-agentcore-control", endpoint_url=endpoint, config=cfg)
    data = boto3.client("bedrock-agentcore", endpoint_url=endpoint, config=cfg)
    created = ctl.create_agent_runtime(
        agentRuntimeName=plan["name"],
        agentRuntimeArtifact={"codeConfiguration": {
            "code": {"s3": {"bucket": "berth-local", "prefix": plan["prefix"]}},
            "runtime": "PYTHON_3_12", "entryPoint": plan["entryPoint"]}},
        roleArn="arn:aws:iam::123456789012:role/AgentRuntimeRole",
        networkConfiguration={"networkMode": "PUBLIC"},
        filesystemConfigurations=[{"sessionStorage": {"mountPath": plan["mountPath"]}}],
    )
    deadline = time.monotonic() + 60
    while True:
        got = ctl.get_agent_runtime(agentRuntimeId=created["agentRuntimeId"])
        if got["status"] != "CREATING" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    arn = created["agentRuntimeArn"]
    report = {
        "arn": arn,
        "status": got["status"],
        "filesystemConfigurations": got.get("filesystemConfigurations"),
        "steps": {s["name"]: step(data, arn, s) for s in plan["steps"]},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
