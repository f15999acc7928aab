"""At-least-once offsets for the streams app: we commit, not faust.

faust-streaming (0.15) can commit the offset of a message its agent never saw. In a restarted
app the fetcher runs before `Seek stream partitions to committed offsets` finishes (it was started
for the changelog recovery, and the stream partitions are resumed before the seek). Records fetched
in that window move `Consumer._read_offset` ahead; the seek resets it while the fetch loop is still
delivering, so the loop (a) takes the jump from the reset read offset to the next record as a
"gap" (`Consumer._add_gap`) that `_new_offset` counts as acknowledged, and (b) drops the records
re-fetched after the seek as already read ("DROPPED MESSAGE ROFF"). The commit then moves past
records no agent processed (seen: a partition committed to its end, 36 submissions never
forwarded). `_new_offset` also lets the first acknowledged offset sit one past the committed one,
and checks nothing while no offset was committed yet.

Worse, such a restart can leave a partition where the fetcher delivers nothing more at all
(records waiting, none delivered, for minutes).

So the source topics are declared with `acks=False` (faust neither tracks nor commits them) and
each agent reports an event here once its effects are durable (forward acknowledged by the broker,
or the DLQ record). `commit` then commits, per partition, the offset after the longest run of done
offsets that starts at the group's committed offset: a record faust skipped holds the commit
before it. A partition whose commit point has not moved for `STALL_S` while it has records there
(a skipped record, or a stalled fetch) is sought back to that point, so its records are delivered
again (the ones already done come again too; the agents' dedup drops them).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

import faust
from faust.exceptions import ConsumerNotStarted
from faust.transport.consumer import Consumer
from faust.types import TP

log = logging.getLogger("keye.streams")

STALL_S = 15.0


class OffsetLedger:
    def __init__(self, app: faust.App, bootstrap: str, group: str, topics: Iterable[str]) -> None:
        self.app, self.bootstrap, self.group, self.topics = app, bootstrap, group, set(topics)
        self.next: dict[TP, int] = {}  # first offset not yet done (the offset to commit)
        self.done: dict[TP, set[int]] = {}  # done offsets at or after next
        self.committed: dict[TP, int] = {}
        self.moved_at: dict[TP, float] = {}  # when next last advanced (or was learnt)
        self.generation = -1

    def reset(self, tps: Iterable[TP] | None = None) -> None:
        """Forget partitions (all of them on a new assignment: eager rebalances revoke everything)."""
        for state in (self.next, self.done, self.committed, self.moved_at):
            for tp in list(state if tps is None else tps):
                state.pop(tp, None)

    async def mark_done(self, event: faust.EventT) -> None:
        message = event.message
        if message.generation_id != self.app.consumer_generation_id:
            return  # from before a rebalance: the partition's new owner processes it again
        await self._learn(message.tp)
        if message.offset >= self.next[message.tp]:
            self.done[message.tp].add(message.offset)

    async def _learn(self, tp: TP) -> None:
        if self.generation != self.app.consumer_generation_id:
            self.reset()
            self.generation = self.app.consumer_generation_id
        if tp not in self.next:
            self.next[tp] = await self._start(tp)
            self.done[tp] = set()

    async def _start(self, tp: TP) -> int:
        """The group's committed offset of tp (the earliest offset when there is none)."""
        committed = await asyncio.to_thread(self._committed, tp)
        earliest = (await self.app.consumer.earliest_offsets(tp)).get(tp, 0)
        start = committed if committed is not None and committed >= earliest else earliest
        self.committed[tp] = start
        self.moved_at[tp] = time.monotonic()
        return start

    def _committed(self, tp: TP) -> int | None:
        from kafka import KafkaConsumer, TopicPartition

        # a consumer that never subscribes does not join the group: it only reads its offsets
        reader = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=self.group, enable_auto_commit=False)
        try:
            return reader.committed(TopicPartition(tp.topic, tp.partition))
        finally:
            reader.close()

    async def commit(self) -> None:
        """Commit every partition's done prefix; seek a partition stuck with records waiting back to it."""
        try:
            assigned = self.app.consumer.assignment()
        except ConsumerNotStarted:
            return
        for tp in assigned:
            if tp.topic in self.topics:
                await self._learn(tp)  # watched even before its first event (a stalled fetch has none)
        due: dict[TP, int] = {}
        now = time.monotonic()
        for tp, done in list(self.done.items()):
            nxt = self.next[tp]
            while nxt in done:
                done.discard(nxt)
                nxt += 1
            if nxt > self.next[tp]:
                self.next[tp], self.moved_at[tp] = nxt, now
            if nxt > self.committed[tp]:
                due[tp] = nxt
            waiting = self.app.consumer.highwater(tp)
            if waiting is not None and waiting > nxt and now - self.moved_at[tp] >= STALL_S:
                log.warning(
                    "%s[%d]: offset %d has not been processed for %.0fs while records up to %d wait "
                    "(faust skipped it or its fetch stalled); seeking back to it",
                    tp.topic,
                    tp.partition,
                    nxt,
                    now - self.moved_at[tp],
                    waiting - 1,
                )
                self.moved_at[tp] = now
                await self.app.consumer.seek(tp, nxt)
        if not due:
            return
        await self.app.producer.flush()  # table marks of the events committed reach the changelog first
        # faust has no public "commit these offsets" call; `_commit` is its transport hook (assigned
        # partitions only; False when the group rebalanced meanwhile).
        consumer = self.app.consumer
        assert isinstance(consumer, Consumer), "faust's transports derive their consumers from this base"
        if await consumer._commit(due):
            self.committed.update(due)
