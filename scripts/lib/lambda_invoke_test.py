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


def sqs_batch(*records):
    """An SQS event of (message id, body) records, from infra/events/sqs-batch.json."""
    with open(os.path.join(EVENTS, "sqs-batch.json")) as f:
        template = json.load(f)["Records"][0]
    batch = []
    for message_id, body in records:
        record = copy.deepcopy(template)
        record["messageId"], record["body"] = message_id, body
        batch.append(record)
    return {"Records": batch}


def invoke_raw(function, data):
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(data, f)
    out = subprocess.run(
        ["cargo", "lambda", "invoke", function, "--invoke-address", "127.0.0.1", "--invoke-port", PORT, "--data-file", f.name],
        capture_output=True, text=True, timeout=600, check=False,
    )
    os.unlink(f.name)
    if out.returncode != 0:
        raise AssertionError(f"cargo lambda invoke {function} failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def invoke(function, data):
    """An API Gateway invocation: the answer's status and JSON body."""
    response = invoke_raw(function, data)
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

# The dispatcher: an event record expands into a delivery attempt on the delivery queue, and the
# attempt record posts to the webhook, signed; a receiver here checks the signature with the
# `standardwebhooks` package (not our code).
import http.server
import threading

import standardwebhooks

received = []


class Receiver(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
threading.Thread(target=server.serve_forever, daemon=True).start()
hook_url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
configure = event("apigw-rest-create.json", instance_token, path="/api/events/webhook/lambda-one",
                  body={"enabled": True, "url": hook_url})
status, body = invoke("api", configure)
secret = body.get("webhook", {}).get("signingSecret") or ""
check("the api function configures a webhook", status == 200 and secret.startswith("whsec_"), body)
status, body = invoke("api", event("apigw-rest-list.json", ACCOUNT_TOKEN))
instance_id = body["instances"][0]["id"]
queued_event = {"id": "evt-lambda-1", "event": "instance.state", "timestamp": "2026-12-01T00:00:00Z",
                "instance": instance_id, "data": {"state": "connecting"}}
answer = invoke_raw("dispatcher", sqs_batch(("m-event", json.dumps(queued_event)), ("m-junk", "not json")))
failures = [f["itemIdentifier"] for f in answer.get("batchItemFailures", [])]
check("the dispatcher reports only the unreadable record as failed", failures == ["m-junk"], answer)
attempts = sqs.receive_message(QueueUrl=os.environ["RYZE_DELIVERY_QUEUE_URL"], MaxNumberOfMessages=10,
                               WaitTimeSeconds=2).get("Messages", [])
check("the event became one delivery attempt on the delivery queue", len(attempts) == 1, attempts)
if attempts:
    answer = invoke_raw("dispatcher", sqs_batch(("m-attempt", attempts[0]["Body"])))
    check("the attempt succeeds", answer.get("batchItemFailures") == [], answer)
    verified = False
    if received:
        path, headers, payload = received[0]
        try:
            standardwebhooks.Webhook(secret).verify(payload, {k.lower(): v for k, v in headers.items()})
            verified = path == "/hooks" and json.loads(payload)["instanceData"]["instance"] == "lambda-one"
        except Exception as error:  # noqa: BLE001 - reported as the check's detail
            received.append(str(error))
    check("the receiver got the envelope, signed (verified by the standardwebhooks package)", verified, received)
server.shutdown()

print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
