"""moto_server for the tests, with DynamoDB's writes made atomic.

moto's server handles requests on many threads, and its DynamoDB backend checks a write's conditions
and applies it without a lock, so two racing conditional writes (or transactions) can both pass
their checks. DynamoDB itself never allows that, and the tests race creates on purpose. Holding one
lock around each write restores DynamoDB's semantics.

moto's SQS long poll also spins: it waits for "any visible message", so on a FIFO queue whose
visible messages all belong to a group still in flight (a second command for an instance while the
first is handled, which is our commands' normal case) the wait returns at once, over and over, for
the whole 20 s of the poll. A few such polls held moto's one core and made every call take seconds
(a heartbeat on 12 instances took 1.5 to 5 s). Here a poll that found nothing deliverable waits for
a new message, a delete (which may free its group) or 100 ms, whichever comes first, as SQS's own
polls do in effect. And a group whose messages were given back for later (visible again) is not
held by them any more, so they come again in the order sent, as on SQS.

moto also kept, for the server's lifetime, every model object it ever made, copies included (a
class-level list for its reset), and two of its calls copy a whole store: a transaction copies
every table it touches as its rollback backup, and a ListObjectVersions copies every version of
every key in the bucket. Memory and time grew with the square of the sessions: at 300 sessions
moto passed 11 GB in 2.5 minutes and spent two thirds of its core copying. Here nothing is
tracked, and a transaction keeps an undo log of the items it touches instead (writes hold the
lock above, so nothing else sees them in between). Resolving a request's backend, which moto
does under one global lock by listing its package directory, is memoised per host name.

Usage: python infra/moto/server.py -H 127.0.0.1 -p PORT (the arguments of moto_server).

With RYZE_MOTO_CALLS=FILE set, it also counts DynamoDB calls by action and, on SIGUSR1, writes the
counts so far to FILE as JSON (scripts/bench-aws: how many calls one request costs).

With RYZE_MOTO_HEAP=FILE set, it traces its Python allocations and, on SIGUSR2, writes the
largest allocation sites still live to FILE (what an emulator run of a thousand sessions holds).
"""

import copy
import functools
import json
import os
import signal
import threading
import time
from collections import Counter

from moto.core.common_models import BaseModel
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main
from moto.sqs.models import Queue, SQSBackend

_WRITES = threading.RLock()

# Only moto's reset reads the tracked instances; the tests never reset (each uses fresh names).
def _untracked(cls, *_args, **_kwargs):
    return super(BaseModel, cls).__new__(cls)


BaseModel.__new__ = staticmethod(_untracked)

# The "backup" a transaction takes of each table is the table itself; `_with_undo_log` undoes.
Table.__deepcopy__ = lambda self, _memo: self


def _before(backend, op_type, op):
    """(table, hash key, range key or None, a copy of the item as it is) for one operation."""
    table = backend.tables.get(op.get("TableName"))
    attributes = op.get("Item") if op_type == "Put" else op.get("Key")
    if table is None or not attributes or table.hash_key_attr not in attributes:
        return None
    hash_key = DynamoType(attributes[table.hash_key_attr])
    if table.range_key_attr is None:
        return table, hash_key, None, copy.deepcopy(table.items.get(hash_key))
    if table.range_key_attr not in attributes:
        return None
    range_key = DynamoType(attributes[table.range_key_attr])
    item = table.items.get(hash_key, {}).get(range_key)
    return table, hash_key, range_key, copy.deepcopy(item)


def _restore(table, hash_key, range_key, item):
    if range_key is None:
        if item is None:
            table.items.pop(hash_key, None)
        else:
            table.items[hash_key] = item
        return
    if item is not None:
        table.items.setdefault(hash_key, {})[range_key] = item
        return
    partition = table.items.get(hash_key)
    if partition is not None:
        partition.pop(range_key, None)
        if not partition:
            table.items.pop(hash_key, None)


def _with_undo_log(transact):
    @functools.wraps(transact)
    def undoable(self, transact_items):
        undo = [
            before
            for item in transact_items
            for op_type, op in item.items()
            if (before := _before(self, op_type, op)) is not None
        ]
        try:
            return transact(self, transact_items)
        except Exception:
            for before in reversed(undo):
                _restore(*before)
            raise

    return undoable


DynamoDBBackend.transact_write_items = _with_undo_log(DynamoDBBackend.transact_write_items)


def _holding(lock):
    """A wrapper that runs a method with `lock` held."""

    def wrap(method):
        @functools.wraps(method)
        def locked(*args, **kwargs):
            with lock:
                return method(*args, **kwargs)

        return locked

    return wrap


for _name in ("put_item", "update_item", "delete_item", "transact_write_items"):
    setattr(DynamoDBBackend, _name, _holding(_WRITES)(getattr(DynamoDBBackend, _name)))

# How long an idle poll sleeps between looks when nothing wakes it.
_POLL_RECHECK_SECS = 0.1


def _wait_for_change(self, timeout):
    with self._messages_lock:
        self._messages_lock.wait(timeout=min(timeout, _POLL_RECHECK_SECS))


def _notifying(delete):
    @functools.wraps(delete)
    def deleted(self, receipt_handle):
        delete(self, receipt_handle)
        with self._messages_lock:
            self._messages_lock.notify_all()

    return deleted


Queue.wait_for_messages = _wait_for_change
Queue.delete_message = _notifying(Queue.delete_message)


def _groups_in_flight(self):
    return {
        message.group_id
        for message in list(self._pending_messages)
        if message.group_id is not None and not message.visible
    }


_RECEIVES = threading.RLock()


def _one_look_at_a_time(receive_message):
    @functools.wraps(receive_message)
    def receive(self, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs):
        queue = self.get_queue(queue_name)
        deadline = time.monotonic() + int(wait_seconds_timeout or 0)
        while True:
            with _RECEIVES:
                found = receive_message(self, queue_name, count, 0, visibility_timeout, *args, **kwargs)
            left = deadline - time.monotonic()
            if found or left <= 0:
                return found
            queue.wait_for_messages(left)

    return receive


# moto's long poll works out which groups are held once, when it starts, and runs beside other
# polls and visibility changes without a lock: two polls racing on a FIFO queue handed out a
# group's second message while its first was in flight with the other. Here each receive looks
# with no wait, one look at a time and apart from visibility changes and deletes, and waits
# between looks.
SQSBackend.receive_message = _one_look_at_a_time(SQSBackend.receive_message)
SQSBackend.change_message_visibility = _holding(_RECEIVES)(SQSBackend.change_message_visibility)
SQSBackend.delete_message = _holding(_RECEIVES)(SQSBackend.delete_message)

# A group is held while one of its messages is in flight. moto counts a message handed out as in
# flight until a receive passes over it, even once it is visible again, so of a group's two
# messages given back for later it handed out the second first.
Queue.pending_message_groups = property(_groups_in_flight)


def _memoised(get_backend_for_host):
    backends = {}

    @functools.wraps(get_backend_for_host)
    def memoised(self, host):
        if host not in backends:
            backends[host] = get_backend_for_host(self, host)
        return backends[host]

    return memoised


DomainDispatcherApplication.get_backend_for_host = _memoised(DomainDispatcherApplication.get_backend_for_host)


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

def _trace_heap(path):
    import tracemalloc

    tracemalloc.start(12)

    def dump(_signum, _frame):
        snapshot = tracemalloc.take_snapshot()
        with open(path + ".tmp", "w") as out:
            current, peak = tracemalloc.get_traced_memory()
            out.write(f"traced {current / 2**20:.1f} MiB, peak {peak / 2**20:.1f} MiB\n")
            for stat in snapshot.statistics("traceback")[:25]:
                out.write(f"\n{stat.size / 2**20:.1f} MiB in {stat.count} blocks\n")
                out.write("\n".join(stat.traceback.format(limit=12)) + "\n")
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGUSR2, dump)


if os.environ.get("RYZE_MOTO_HEAP"):
    _trace_heap(os.environ["RYZE_MOTO_HEAP"])

if __name__ == "__main__":
    main()
