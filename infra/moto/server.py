"""moto_server for the tests, with DynamoDB's writes made atomic.

moto's server handles requests on many threads, and its DynamoDB backend checks a write's conditions
and applies it without a lock, so two racing conditional writes (or transactions) can both pass
their checks. DynamoDB itself never allows that, and the tests race creates on purpose. Holding one
lock around each write restores DynamoDB's semantics. SQS long polls and S3 are untouched.

Usage: python infra/moto/server.py -H 127.0.0.1 -p PORT (the arguments of moto_server).
"""

import functools
import threading

from moto.dynamodb.models import DynamoDBBackend
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

if __name__ == "__main__":
    main()
