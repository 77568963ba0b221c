"""kafka-python's admin client (an independent implementation of the protocol) against Silt.

Usage: python3 admin.py BOOTSTRAP TOPIC
Creates a topic with a config, describes and alters configs (legacy and incremental), grows
the partitions, describes the cluster and log dirs, deletes records and the topic. Prints one
JSON line; exits 1 on any mismatch. Every call has a timeout.
"""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions, NewTopic


def check(cond, what):
    if not cond:
        print(json.dumps({"ok": False, "error": what}))
        sys.exit(1)


def topic_configs(admin, topic):
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    return {name: c["value"] for name, c in res["topic"][topic].items()}


def main():
    bootstrap, topic = sys.argv[1], sys.argv[2]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    admin.create_topics([NewTopic(topic, 2, 1, topic_configs={"retention.ms": "1000000"})], timeout_ms=10000)
    configs = topic_configs(admin, topic)
    check(configs.get("retention.ms") == "1000000", f"retention.ms override: {configs.get('retention.ms')}")
    check(len(configs) >= 20, f"every topic config described: {len(configs)}")

    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "3000000"})])
    configs = topic_configs(admin, topic)
    check(configs.get("retention.ms") == "3000000", f"retention.ms after alter: {configs.get('retention.ms')}")

    admin.create_partitions({topic: NewPartitions(total_count=3)}, timeout_ms=10000)
    described = admin.describe_topics([topic])
    check(len(described[0]["partitions"]) == 3, f"3 partitions: {described}")

    cluster = admin.describe_cluster()
    check(len(cluster["brokers"]) == 1 and cluster["cluster_id"], f"cluster: {cluster}")

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for i in range(10):
        producer.send(topic, value=f"v{i}".encode(), partition=2).get(timeout=10)
    producer.close()
    tp = TopicPartition(topic, 2)
    admin.delete_records({tp: 4}, timeout_ms=10000)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    begin = consumer.beginning_offsets([tp])[tp]
    consumer.close()
    check(begin == 4, f"log start after delete_records: {begin}")

    dirs = admin.describe_log_dirs()
    check(topic in json.dumps(dirs, default=str), f"log dirs name the topic: {dirs}")

    admin.delete_topics([topic], timeout_ms=10000)
    check(topic not in admin.list_topics(), "topic deleted")
    admin.close()
    print(json.dumps({"ok": True}))


if __name__ == "__main__":
    main()
