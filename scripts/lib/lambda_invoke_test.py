"""Invokes the Lambda functions through `cargo lambda invoke` with API Gateway events and checks
the contract's answers. Runs against the `cargo lambda watch` started by scripts/test-lambda, whose
functions use the moto deployment named by the RYZE_* variables.

Usage: lambda_invoke_test.py INVOKE_PORT ACCOUNT_TOKEN
"""

import copy
import json
import os
import subprocess
import sys
import tempfile

import boto3

EVENTS = os.path.join(os.path.dirname(__file__), "..", "..", "infra", "events")
PORT, ACCOUNT_TOKEN = sys.argv[1], sys.argv[2]
results = {"passed": 0, "failed": 0}


def event(name, token=None, path=None, method=None, body=None):
    with open(os.path.join(EVENTS, name)) as f:
        data = json.load(f)
    text = json.dumps(data)
    if token is not None:
        text = text.replace("__ACCOUNT_TOKEN__", token)
    data = json.loads(text)
    if token is None:
        for headers in (data.get("headers") or {}, data.get("multiValueHeaders") or {}):
            headers.pop("Authorization", None)
    if path is not None:
        data["path"] = path
        data["pathParameters"] = {"proxy": path.lstrip("/")}
        data["requestContext"]["path"] = "/" + data["requestContext"]["stage"] + path
    if method is not None:
        data["httpMethod"] = method
        data["requestContext"]["httpMethod"] = method
    if body is not None:
        data["body"] = json.dumps(body)
    return data


def invoke(function, data):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    out = subprocess.run(
        ["cargo", "lambda", "invoke", function, "--invoke-address", "127.0.0.1", "--invoke-port", PORT, "--data-file", f.name],
        capture_output=True, text=True, timeout=600, check=False,
    )
    os.unlink(f.name)
    if out.returncode != 0:
        raise AssertionError(f"cargo lambda invoke {function} failed: {out.stderr[-2000:]}")
    response = json.loads(out.stdout.strip().splitlines()[-1])
    return response["statusCode"], json.loads(response["body"])


def check(name, condition, detail=""):
    if condition:
        results["passed"] += 1
        print(f"PASS {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}")


status, body = invoke("api", event("apigw-rest-health.json"))
check("REST v1 event through stage v1: GET /health", status == 200 and body["status"] == "ok", body)

status, body = invoke("api", event("apigw-http-health.json"))
check("HTTP v2 event through stage v1: GET /health", status == 200 and body["success"] is True, body)

status, body = invoke("api", event("apigw-rest-create.json", ACCOUNT_TOKEN))
check("POST /api/instance/new creates", status == 201 and body["instance"]["name"] == "lambda-one", body)
instance_token = body.get("instance", {}).get("token", "")

status, body = invoke("api", event("apigw-rest-create.json", ACCOUNT_TOKEN))
check("the same name again is 409", status == 409 and body["success"] is False, body)

status, body = invoke("api", event("apigw-rest-list.json", ACCOUNT_TOKEN))
names = [i["name"] for i in body.get("instances", [])]
check("GET /api/instance/list lists it", status == 200 and names == ["lambda-one"], body)

status, body = invoke("api", event("apigw-rest-list.json"))
check("no token is 401 in the envelope", status == 401 and body["success"] is False and "message" in body["error"], body)

settings = event("apigw-rest-list.json", instance_token, path="/api/instance/getSettings/lambda-one")
status, body = invoke("api", settings)
check("the instance token reads its settings", status == 200 and "settings" in body, body)

bad_phone = event("apigw-rest-list.json", instance_token, path="/api/instance/connect/lambda-one")
bad_phone["queryStringParameters"] = {"number": "12"}
bad_phone["multiValueQueryStringParameters"] = {"number": ["12"]}
status, body = invoke("connect", bad_phone)
check("connect refuses a bad number before waiting", status == 400 and body["error"]["message"] == "Invalid phone number", body)

# No session host runs here: the connect function queues the command and, after its wait budget,
# answers the contract's failure.
status, body = invoke("connect", event("apigw-rest-list.json", instance_token, path="/api/instance/connect/lambda-one"))
check("connect without a host answers 500 after its budget", status == 500 and body["error"]["message"] == "Failed to generate QR code", body)
sqs = boto3.client("sqs")
messages = sqs.receive_message(QueueUrl=os.environ["RYZE_COMMAND_QUEUE_URL"], MaxNumberOfMessages=10,
                               AttributeNames=["MessageGroupId"], WaitTimeSeconds=1).get("Messages", [])
commands = [json.loads(m["Body"]) for m in messages]
check("the connect command is on the FIFO queue, grouped by instance",
      any(c["type"] == "connect" for c in commands)
      and all(m["Attributes"]["MessageGroupId"] == c["instance"] for m, c in zip(messages, commands)), commands)

print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
