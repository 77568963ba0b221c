"""Round trip through confluent-kafka (a current librdkafka, bundled in the wheel).

Usage: python3 roundtrip.py BOOTSTRAP TOPIC COUNT
Creates TOPIC (3 partitions) with the AdminClient, produces COUNT keyed records with headers
and explicit timestamps in each codec, consumes them back with assign() (no consumer groups
yet), checks every field and per-partition offsets, deletes the topic. Prints one JSON line;
exits 1 on any mismatch. Every wait is bounded.
"""
import json
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

T0 = 1_700_000_000_000


def fail(msg):
    print(json.dumps({"ok": False, "error": msg}))
    sys.exit(1)


def main():
    bootstrap, base_topic, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    total = 0
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"]:
        topic = f"{base_topic}-{codec}"
        for f in admin.create_topics([NewTopic(topic, 3, 1)], operation_timeout=10).values():
            f.result(timeout=30)
        producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec,
                             "acks": "all", "linger.ms": 5})
        errors = []
        for i in range(count):
            producer.produce(topic, key=f"k{i}", value=None if i % 9 == 0 else f"v{i}",
                             partition=i % 3, timestamp=T0 + i, headers=[("i", str(i))],
                             on_delivery=lambda err, msg: err and errors.append(str(err)))
            producer.poll(0)
        if producer.flush(30) != 0 or errors:
            fail(f"{codec}: produce: {errors[:3]}")
        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused",
                             "enable.auto.commit": False})
        consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
        got = []
        deadline = time.time() + 60
        while len(got) < count and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is None:
                continue
            if m.error():
                fail(f"{codec}: consume: {m.error()}")
            got.append(m)
        consumer.close()
        if len(got) != count:
            fail(f"{codec}: consumed {len(got)} of {count}")
        next_offset = {0: 0, 1: 0, 2: 0}
        for m in got:
            i = int(dict(m.headers())["i"])
            if m.offset() != next_offset[m.partition()] or m.partition() != i % 3:
                fail(f"{codec}: record {i} at {m.partition()}/{m.offset()}")
            next_offset[m.partition()] += 1
            want = None if i % 9 == 0 else f"v{i}".encode()
            if m.key() != f"k{i}".encode() or m.value() != want or m.timestamp()[1] != T0 + i:
                fail(f"{codec}: record {i} differs: {m.key()} {m.value()} {m.timestamp()}")
        for f in admin.delete_topics([topic], operation_timeout=10).values():
            f.result(timeout=30)
        total += len(got)
    print(json.dumps({"ok": True, "consumed": total}))


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        fail(str(e))
