""" "A run finished" notifications: what wakes a `?wait=` request the moment its run ends.

Publisher: `run_finished_on_commit(run_id)`, called by `runs.services.run_finish` inside its
transaction. Once that commits, it wakes this process's waiters directly (on the embedded default
the worker runs in threads of the web process; a cancel is served by a web process too) and, with
REDIS_URL, PUBLISHes the run id on CHANNEL, which reaches every web process. It never raises: a
Redis that is down is logged, and the waiters elsewhere see the run at their safety poll.

Waiters: `watching(run_id)` registers a `threading.Event` for one waiter (several may wait on one
run) and removes it on exit, whatever happens; `runs.selectors.run_wait` registers before it reads
the run, so a run that finishes between that read and the wait still sets the event.

Listener: with REDIS_URL, one daemon thread per process holds one pub/sub connection, started by the
first wait, and sets the events of the run ids it hears; gunicorn's threads share it. When Redis
goes away it reconnects with a backoff (CHANNEL holds nothing to catch up on) and, on every
subscription, wakes every registered waiter once, so a run that finished while it was not
subscribed (before its first subscription, during a restart) is read at once, not at the next poll.

Pub/sub delivers at most once: a Redis restart, a publisher that dies between commit and publish,
or a run ended by another process on the embedded default loses the notification. So an event only
ever makes a waiter read the database again, which stays the truth, and waiters keep a slow safety
poll (RUN_WAIT_POLL_S): a lost notification delays an answer, never hangs it. A spurious one (pub/sub
ignores Redis database numbers, so deployments sharing a Redis hear each other's runs) wakes no one,
as run ids are UUIDs.
"""

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator

import redis
from django.conf import settings
from django.db import transaction
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

CHANNEL = "llmops:runs:finished"
# Reconnection delays of the listener: doubling from the first to the last while Redis is down.
BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
# How long one read of the listener blocks, i.e. how soon it notices it was asked to stop.
READ_TIMEOUT_S = 1.0
# A connection that died silently (no FIN: a partition, a lost machine) is found by a PING this often.
HEALTH_CHECK_S = 10
# Connecting, a PUBLISH and a subscription's confirmation: a hung Redis must not hang a worker's thread.
SOCKET_TIMEOUT_S = 2.0

_lock = threading.Lock()
_waiters: dict[str, set[threading.Event]] = {}  # run id -> the events of its waiters in this process
_listener: "_Listener | None" = None
_publisher: tuple[str, redis.Redis] | None = None  # (its URL, the client)


def run_finished_on_commit(run_id: uuid.UUID) -> None:
    """Notifies the run's waiters, in every process, once the current transaction commits.

    Precondition: the run's finished state is written in that transaction, so whoever is woken reads it.
    Outside a transaction it notifies at once; a rolled-back transaction notifies no one.
    """
    key = str(run_id)
    transaction.on_commit(lambda: _notify(key))


def _notify(run_id: str) -> None:
    _wake(run_id)
    url = settings.REDIS_URL
    if not url:
        return
    try:
        _publisher_client(url).publish(CHANNEL, run_id)
    except Exception:  # redis-py's errors name the host and port, never the URL's password
        logger.warning(
            "run finished but not announced; its waiters elsewhere see it by polling",
            extra={"run_id": run_id},
            exc_info=True,
        )


@contextlib.contextmanager
def watching(run_id: uuid.UUID) -> Iterator[threading.Event]:
    """An event set when the run finishes (or a notification may have been lost: read it again).

    Clear it before each read of the run, not after: one set in between then ends the next wait at once.
    """
    key = str(run_id)
    event = threading.Event()
    with _lock:
        _waiters.setdefault(key, set()).add(event)
    try:
        _ensure_listener()
        yield event
    finally:
        with _lock:
            events = _waiters.get(key)
            if events is not None:
                events.discard(event)
                if not events:
                    del _waiters[key]


def waiting() -> int:
    """How many waiters this process has registered."""
    with _lock:
        return sum(len(events) for events in _waiters.values())


def listening() -> bool:
    """Whether this process's listener is subscribed (never on the embedded default: nothing to hear)."""
    listener = _listener
    return listener is not None and listener.subscribed.is_set()


def stop_listener() -> None:
    """Stops this process's listener within READ_TIMEOUT_S (tests; the next wait starts one again)."""
    global _listener
    with _lock:
        listener, _listener = _listener, None
    if listener is not None:
        listener.stop()


def _wake(run_id: str) -> None:
    with _lock:
        for event in _waiters.get(run_id, ()):
            event.set()


def _wake_all() -> None:
    with _lock:
        for events in _waiters.values():
            for event in events:
                event.set()


def _client(url: str, **options: float) -> redis.Redis:
    # No retries inside redis-py: the publisher gives up at once (waiters poll) and the listener has
    # its own reconnection, which must see each new subscription to wake its waiters.
    return redis.Redis.from_url(
        url, socket_connect_timeout=SOCKET_TIMEOUT_S, socket_keepalive=True, retry=Retry(NoBackoff(), 0), **options
    )


def _publisher_client(url: str) -> redis.Redis:
    """One client per process (its connection pool is thread-safe); a new one when REDIS_URL changed."""
    global _publisher
    with _lock:
        if _publisher is None or _publisher[0] != url:
            _publisher = (url, _client(url, socket_timeout=SOCKET_TIMEOUT_S))
        return _publisher[1]


def _ensure_listener() -> None:
    """Starts the listener for REDIS_URL unless it runs; never raises (without one, waiters poll)."""
    global _listener
    url = settings.REDIS_URL
    with _lock:
        current = _listener
        if current is not None and current.url == url and current.alive():
            return
        if current is not None:
            current.stop()
        _listener = None
        if url:
            try:
                _listener = _Listener(url).start()
            except RuntimeError:  # no thread to be had: this process's waiters poll
                logger.warning("run finished listener not started; waits poll", exc_info=True)


class _Listener:
    """The one pub/sub connection of a process, in a daemon thread, reconnecting until stopped."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="runs-finished-listener", daemon=True)

    def start(self) -> "_Listener":
        self._thread.start()
        return self

    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        failing = False
        while not self._stop.is_set():
            client = pubsub = None
            try:
                client = _client(self.url, health_check_interval=HEALTH_CHECK_S)
                pubsub = client.pubsub()
                self._subscribe(pubsub)
                if failing:
                    logger.info("listening for finished runs again")
                failing, backoff = False, BACKOFF_MIN_S
                _wake_all()  # whatever finished while not subscribed is read now
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=READ_TIMEOUT_S)
                    if message is not None and message["type"] == "message":
                        _wake(message["data"].decode())
            except Exception:
                if not failing:  # once per outage, not once per attempt
                    logger.warning("not listening for finished runs; waits poll until Redis is back", exc_info=True)
                failing = True
            finally:
                self.subscribed.clear()
                for connection in (pubsub, client):
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            connection.close()
            if failing:
                self._stop.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _subscribe(self, pubsub: redis.client.PubSub) -> None:
        """Subscribes and waits for Redis's confirmation: from then on, every PUBLISH reaches us."""
        pubsub.subscribe(CHANNEL)
        message = pubsub.get_message(timeout=SOCKET_TIMEOUT_S)
        if message is None or message["type"] != "subscribe":
            raise ConnectionError(f"no confirmation of the subscription to {CHANNEL}: {message!r}")
        self.subscribed.set()


def _reset_after_fork() -> None:
    """A forked child (gunicorn --preload) inherits neither the listener thread nor the parent's waiters,
    and maybe a lock some parent thread held."""
    global _lock, _listener, _publisher
    _lock = threading.Lock()
    _waiters.clear()
    _listener = None
    _publisher = None


os.register_at_fork(after_in_child=_reset_after_fork)
