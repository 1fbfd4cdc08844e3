"""The outbox's Kafka side: mismatch events made into messages, and committed outbox
messages produced at least once, in outbox order, then forgotten.

A batch queues its messages in its own transaction (:mod:`reconciliation.store.outbox`);
once it commits they are produced here. A failure to produce leaves them queued and sets
:attr:`Outbox.retry`: the next drain sends everything left, oldest first, so no consumer
sees a newer transition before an older one.
"""

from __future__ import annotations

import logging

import psycopg
from kafka.errors import KafkaError

from hub.avro.codec import Encoder
from hub.avro.writer import compile_encoder
from hub.idschemes import IdScheme
from hub.kafka import flush_acknowledged
from reconciliation.store import outbox as stored

log = logging.getLogger(__name__)

Message = tuple[str, bytes | None, bytes]
"""(topic, key, value)."""


class Outbox:
    """Produces the outbox of one reconciler; ``retry`` is set while messages wait."""

    def __init__(self, scheme: IdScheme, mismatches_topic: str):
        self.scheme = scheme
        self.mismatches_topic = mismatches_topic
        self.retry = False
        self._event_encoder = compile_encoder("hub.MismatchEvent") or Encoder("hub.MismatchEvent")

    def event_message(self, event: dict) -> Message:
        """The ``hub.MismatchEvent`` message of ``event``, keyed by the normalized citizen
        ID (``sector:record_key`` when there is none)."""
        cid = self.scheme.normalize(event.get("citizen_id"))
        key = cid if cid else f"{event['sector']}:{event['record_key']}"
        return (self.mismatches_topic, key.encode(), self._event_encoder.encode(event))

    def publish(
        self, conn: psycopg.Connection, producer, messages: list[tuple[int, Message]]
    ) -> None:
        """Produce committed outbox messages, wait for the acknowledgements, forget them."""
        if not messages:
            return
        try:
            futures = [
                (i, producer.send(topic, key=key, value=value))
                for i, (topic, key, value) in messages
            ]
            # KafkaTimeoutError after FLUSH_TIMEOUT_S, or sooner when the producer stalls
            flush_acknowledged(producer, [f for _, f in futures])
        except KafkaError as exc:
            # Committed state is safe; the messages stay in the outbox for the next drain.
            self.retry = True
            log.warning("outbox not produced (%s); kept for a retry", type(exc).__name__)
            return
        done = [i for i, f in futures if f.succeeded()]
        if len(done) < len(futures):
            self.retry = True
            log.warning(
                "%d outbox messages not acknowledged; kept for a retry", len(futures) - len(done)
            )
        stored.outbox_delete(conn, done)

    def drain(self, conn: psycopg.Connection, producer) -> None:
        """Produce what a previous process committed but did not get to produce."""
        after = 0
        while True:
            rows = stored.outbox_pending(conn, after)
            if not rows:
                return
            log.info("producing %d messages left in the outbox", len(rows))
            self.publish(conn, producer, [(i, (t, k, v)) for i, t, k, v in rows])
            if self.retry:
                return  # the broker is still failing: keep the order, retry later
            after = rows[-1][0]
