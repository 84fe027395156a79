"""boto3 against an authenticating berth, for berth's compat tests.

Reads a JSON list of cases on stdin, each {"name", "access_key", "secret_key",
"arn", "skew_seconds" (optional), "presign" (optional)}, and prints one JSON
report: for an invocation, the outcome as boto3 raised it (error code, HTTP
status, message) or the agent's answer; for "presign", a WebSocket URL
presigned the way AWS's AgentCoreRuntimeClient.generate_presigned_url does
(botocore's SigV4QueryAuth over an https URL whose host header is the bare
hostname).
"""
import datetime
import json
import sys
import uuid
from urllib.parse import quote, urlencode, urlparse

import boto3
import botocore.auth
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

endpoint = sys.argv[1]
real_now = botocore.auth.get_current_datetime


def invoke(case):
    skew = datetime.timedelta(seconds=case.get("skew_seconds", 0))
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: real_now(remove_tzinfo) + skew
    try:
        client = boto3.client(
            "bedrock-agentcore",
            region_name="us-east-1",
            endpoint_url=endpoint,
            aws_access_key_id=case["access_key"],
            aws_secret_access_key=case["secret_key"],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        resp = client.invoke_agent_runtime(
            agentRuntimeArn=case["arn"],
            runtimeSessionId=str(uuid.uuid4()),
            contentType="application/json",
            payload=json.dumps({"op": "echo", "pad": "x" * case.get("pad", 0)}),
        )
        body = json.loads(resp["response"].read())
        return {"ok": True, "status": resp["statusCode"], "payload_bytes": len(json.dumps(body.get("payload")))}
    except ClientError as e:
        return {
            "ok": False,
            "code": e.response["Error"]["Code"],
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
            "message": e.response["Error"].get("Message", ""),
        }
    finally:
        botocore.auth.get_current_datetime = real_now


def presign(case):
    ws_url = endpoint.replace("http://", "https://") + "/runtimes/" + quote(case["arn"], safe="") + "/ws?" + urlencode(
        {"qualifier": "DEFAULT", "X-Amzn-Bedrock-AgentCore-Runtime-Session-Id": case["session_id"]}
    )
    request = AWSRequest(method="GET", url=ws_url, headers={"host": urlparse(ws_url).hostname})
    SigV4QueryAuth(Credentials(case["access_key"], case["secret_key"]), "bedrock-agentcore", "us-east-1", expires=300).add_auth(request)
    return {"ok": True, "url": request.url.replace("https://", "ws://")}


report = {}
for case in json.load(sys.stdin):
    report[case["name"]] = presign(case) if case.get("presign") else invoke(case)
json.dump(report, sys.stdout)
