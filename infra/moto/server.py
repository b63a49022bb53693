"""moto_server for the tests, with DynamoDB's writes made atomic.

moto's server handles requests on many threads, and its DynamoDB backend checks a write's conditions
and applies it without a lock, so two racing conditional writes (or transactions) can both pass
their checks. DynamoDB itself never allows that, and the tests race creates on purpose. Holding one
lock around each write restores DynamoDB's semantics. SQS long polls and S3 are untouched.

Usage: python infra/moto/server.py -H 127.0.0.1 -p PORT (the arguments of moto_server).

With RYZE_MOTO_CALLS=FILE set, it also counts DynamoDB calls by action and, on SIGUSR1, writes the
counts so far to FILE as JSON (scripts/bench-aws: how many calls one request costs).
"""

import functools
import json
import os
import signal
import threading
from collections import Counter

from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.responses import DynamoHandler
from moto.server import main

_WRITES = threading.RLock()


def _atomic(method):
    @functools.wraps(method)
    def locked(*args, **kwargs):
        with _WRITES:
            return method(*args, **kwargs)

    return locked


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))


def _count_calls(path):
    calls = Counter()
    lock = threading.Lock()
    call_action = DynamoHandler.call_action

    @functools.wraps(call_action)
    def counted(self):
        with lock:
            calls[self._get_action()] += 1
        return call_action(self)

    def dump(_signum, _frame):
        with lock:
            snapshot = dict(calls)
        with open(path + ".tmp", "w") as out:
            json.dump(snapshot, out)
        os.replace(path + ".tmp", path)

    DynamoHandler.call_action = counted
    signal.signal(signal.SIGUSR1, dump)


if os.environ.get("RYZE_MOTO_CALLS"):
    _count_calls(os.environ["RYZE_MOTO_CALLS"])

if __name__ == "__main__":
    main()
