"""Invokes the Lambda functions through `cargo lambda invoke` with API Gateway events and checks
the contract's answers. Runs against the `cargo lambda watch` started by scripts/test-lambda, whose
functions use the moto deployment named by the RYZE_* variables.

The websocket function gets API Gateway WebSocket events ($connect, $disconnect), and the
dispatcher posts frames to the management endpoint RYZE_WEBSOCKET_ENDPOINT, which is a recording
server of this script on LIVE_PORT: moto's management API neither keeps what is posted nor ever
answers Gone.

Usage: lambda_invoke_test.py INVOKE_PORT ACCOUNT_TOKEN LIVE_PORT
"""

import copy
import json
import os
import subprocess
import sys
import tempfile
import time

import boto3

EVENTS = os.path.join(os.path.dirname(__file__), "..", "..", "infra", "events")
PORT, ACCOUNT_TOKEN, LIVE_PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
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
    """An SQS event of (message id, body) or (message id, body, FIFO message group) records, from
    infra/events/sqs-batch.json."""
    with open(os.path.join(EVENTS, "sqs-batch.json")) as f:
        template = json.load(f)["Records"][0]
    batch = []
    for message_id, body, *group in records:
        record = copy.deepcopy(template)
        record["messageId"], record["body"] = message_id, body
        if group:
            record["attributes"]["MessageGroupId"] = group[0]
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
attempts = sqs.receive_message(QueueUrl=os.environ["RYZE_ORDERED_DELIVERY_QUEUE_URL"], MaxNumberOfMessages=10,
                               WaitTimeSeconds=2, MessageSystemAttributeNames=["MessageGroupId"]).get("Messages", [])
check("the event became one first attempt on the ordered delivery queue, in the webhook's group",
      len(attempts) == 1 and attempts[0]["Attributes"].get("MessageGroupId") == f"{instance_id}/default", attempts)
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
    sqs.delete_message(QueueUrl=os.environ["RYZE_ORDERED_DELIVERY_QUEUE_URL"],
                       ReceiptHandle=attempts[0]["ReceiptHandle"])

# A FIFO batch keeps each group's order: once a record of a group fails, the group's later records
# are reported failed without being handled, and other groups go on.
later_event = dict(queued_event, id="evt-lambda-2")
other_event = dict(queued_event, id="evt-lambda-3")
answer = invoke_raw("dispatcher", sqs_batch(("g1-junk", "not json", "g1"),
                                            ("g1-later", json.dumps(later_event), "g1"),
                                            ("g2-event", json.dumps(other_event), "g2")))
failures = sorted(f["itemIdentifier"] for f in answer.get("batchItemFailures", []))
check("a failed record holds back the rest of its FIFO group only", failures == ["g1-junk", "g1-later"], answer)
expanded = sqs.receive_message(QueueUrl=os.environ["RYZE_ORDERED_DELIVERY_QUEUE_URL"], MaxNumberOfMessages=10,
                               WaitTimeSeconds=2).get("Messages", [])
expanded_events = [json.loads(m["Body"])["key"]["eventId"] for m in expanded]
check("only the other group's event was expanded", expanded_events == ["evt-lambda-3"], expanded_events)
server.shutdown()

# WebSocket on AWS: the websocket function admits connections as the API admits requests and
# records them on the table; the dispatcher posts each envelope to every recorded connection of the
# instance and forgets one that API Gateway answers Gone (410) for.
import urllib.parse

dynamodb = boto3.client("dynamodb")
TABLE = os.environ["RYZE_TABLE"]
ENABLE_FIRST = ("WebSocket is not enabled for this instance. Configure it first using "
                "POST /api/events/websocket/lambda-one")


def websocket_event(name, connection, instance=None, token=None):
    """An API Gateway WebSocket event from infra/events, for `connection`, with the query given."""
    with open(os.path.join(EVENTS, name)) as f:
        data = json.load(f)
    data["requestContext"]["connectionId"] = connection
    query = {k: v for k, v in (("instance", instance), ("token", token)) if v is not None}
    if "queryStringParameters" in data:
        data["queryStringParameters"] = query or None
        data["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} or None
    return data


def connect(connection, instance, token):
    """$connect: the status and the envelope's message (None for an empty answer)."""
    answer = invoke_raw("websocket", websocket_event("apigw-websocket-connect.json", connection, instance, token))
    body = answer.get("body")
    return answer["statusCode"], (json.loads(body)["error"]["message"] if body else None)


def stored(connection):
    key = {"pk": {"S": f"LIVE#{instance_id}"}, "sk": {"S": f"CONNECTION#{connection}"}}
    return dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item")


posted = []


class Management(http.server.BaseHTTPRequestHandler):
    """API Gateway's management endpoint: records each PostToConnection, Gone for ids `gone-*`."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        stage, _, connection = self.path.partition("/@connections/")
        connection = urllib.parse.unquote(connection)
        posted.append((stage, connection, body, "Authorization" in self.headers))
        gone = connection.startswith("gone-")
        self.send_response(410 if gone else 200)
        self.send_header("Content-Type", "application/json")
        if gone:
            self.send_header("x-amzn-ErrorType", "GoneException")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


management = http.server.ThreadingHTTPServer(("127.0.0.1", LIVE_PORT), Management)
threading.Thread(target=management.serve_forever, daemon=True).start()

status, body = invoke("api", event("apigw-rest-create.json", ACCOUNT_TOKEN, body={"name": "lambda-two"}))
other_token = body.get("instance", {}).get("token", "")
check("a second instance for the cross-instance check", status == 201 and other_token, body)

# API Gateway connection ids end in "=": the dispatcher must escape them in the path.
reader, gone_reader = "Ab1CdEfGhIjKlMn=", "gone-Zy9XwV8uT7s="
status, message = connect(reader, "lambda-one", ACCOUNT_TOKEN)
check("$connect before the WebSocket is configured is 400 with the contract's message",
      status == 400 and message == ENABLE_FIRST, (status, message))
configure = event("apigw-rest-create.json", instance_token, path="/api/events/websocket/lambda-one",
                  body={"enabled": True, "events": ["instance.state"]})
status, body = invoke("api", configure)
check("the api function enables the WebSocket", status == 200 and body["websocket"]["enabled"] is True, body)

status, message = connect(reader, "lambda-one", ACCOUNT_TOKEN)
item = stored(reader)
expires = int(item["expiresAt"]["N"]) if item else 0
check("$connect with the account token is 200 and records the connection for two hours",
      status == 200 and message is None and abs(expires - (time.time() + 7200)) < 300, (status, message, item))
status, message = connect(gone_reader, "lambda-one", instance_token)
check("$connect with the instance's own token is 200", status == 200 and stored(gone_reader), (status, message))
status, message = connect("Bad0TokenConn0=", "lambda-one", "not-a-token")
check("$connect with an unknown token is 401", status == 401 and message, (status, message))
status, message = connect("NoTokenConn000=", "lambda-one", None)
check("$connect without a token is 401", status == 401 and message, (status, message))
status, message = connect("OtherConn00000=", "lambda-one", other_token)
check("$connect with another instance's token is 403", status == 403 and message, (status, message))
status, message = connect("UnknownConn000=", "lambda-none", ACCOUNT_TOKEN)
check("$connect to an unknown instance is 404", status == 404 and message, (status, message))
refused = [c for c in ("Bad0TokenConn0=", "NoTokenConn000=", "OtherConn00000=", "UnknownConn000=") if stored(c)]
check("refused connections are not recorded", not refused, refused)

live_event = {"id": "evt-lambda-ws-1", "event": "instance.state", "timestamp": "2026-12-01T00:00:01Z",
              "instance": instance_id, "data": {"state": "connecting"}}
answer = invoke_raw("dispatcher", sqs_batch(("m-live", json.dumps(live_event))))
check("the dispatcher expands the event", answer.get("batchItemFailures") == [], answer)
by_connection = {connection: (stage, body, signed) for stage, connection, body, signed in posted}
frames = [json.loads(by_connection[c][1]) for c in (reader, gone_reader) if c in by_connection]
check("the dispatcher posted the envelope to both connections, signed, on the stage's path",
      len(posted) == 2 and all(s == "/v1" and signed for s, _, signed in by_connection.values())
      and all(f["id"] == "evt-lambda-ws-1" and f["instanceData"]["instance"] == "lambda-one" for f in frames)
      and len(frames) == 2, posted)
check("the connection answered Gone is forgotten, the other kept",
      stored(gone_reader) is None and stored(reader) is not None, (stored(gone_reader), stored(reader)))

answer = invoke_raw("websocket", websocket_event("apigw-websocket-disconnect.json", reader))
check("$disconnect is 200 and forgets the connection", answer["statusCode"] == 200 and stored(reader) is None, answer)
posted.clear()
live_event["id"] = "evt-lambda-ws-2"
answer = invoke_raw("dispatcher", sqs_batch(("m-live-2", json.dumps(live_event))))
check("with nobody connected nothing is posted", answer.get("batchItemFailures") == [] and posted == [], posted)
management.shutdown()

print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
