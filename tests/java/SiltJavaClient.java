// End-to-end test client for Silt, built with plain javac against
// kafka-clients 3.x and 4.x (see build.sh). Java 17, default package.
//
// Usage:
//   java -cp 'classes/3:lib/3/*' SiltJavaClient <command> <bootstrap> [args]
//
// Commands:
//   roundtrip <bootstrap> <topic> <count> [compression]
//       Create <topic> (3 partitions, RF 3), produce <count> records, consume
//       them back without a consumer group, verify everything, check
//       offsetsForTimes/endOffsets, delete the topic and wait until it is gone.
//   produce <bootstrap> <topic> <count> [compression]
//       Create <topic> (3 partitions, RF 3) unless it exists, then produce
//       <count> records to it (same record shape as roundtrip).
//   consume <bootstrap> <topic> <count>
//       assign() all partitions of <topic>, seek to beginning, poll until
//       <count> records arrived; verify per-partition offsets are contiguous.
//       Reports "available": end offsets minus start offsets after consuming.
//   send <bootstrap> <topic> <count>
//       Produce <count> records to an existing <topic> (no topic creation;
//       partitions from metadata).
//   create-topic <bootstrap> <topic>[,<topic>...] <partitions>
//       AdminClient createTopics.
//   group-offsets <bootstrap> <group>
//       AdminClient listConsumerGroupOffsets: "committed" (sum), "partitions".
//   scram-upsert <bootstrap> <user> <password> <mechanism> [iterations]
//       AdminClient alterUserScramCredentials (mechanism SCRAM-SHA-256 or
//       SCRAM-SHA-512; iterations default 4096).
//   scram-describe <bootstrap> [user[,user...]]
//       AdminClient describeUserScramCredentials (every user, or those named):
//       "users":{"alice":["SCRAM-SHA-512:4096"],...}.
//   acl-create <bootstrap> <principal> <resourceType> <patternType> <name> <op[,op...]> [ALLOW|DENY] [host]
//   acl-delete <bootstrap> <principal> <resourceType> <patternType> <name> <op[,op...]> [ALLOW|DENY] [host]
//       AdminClient createAcls / deleteAcls, one binding (filter) per operation,
//       e.g. acl-create B User:alice TOPIC PREFIXED team-a. READ,WRITE ALLOW.
//       Report "created" / "deleted" (bindings).
//   acl-describe <bootstrap> [principal]
//       AdminClient describeAcls(ANY), optionally only <principal>'s:
//       "acls":[{"principal":..,"host":..,"resourceType":..,"patternType":..,
//       "name":..,"operation":..,"permission":..}].
//   produce-for <bootstrap> <topic> <millis>
//       Create <topic> (1 partition) unless it exists, then produce one record
//       at a time (each acknowledged before the next) for <millis> ms with one
//       producer; report "sent", "acked" and the producer's connection and
//       (re-)authentication metrics.
//
// Record i (0-based) has: partition i % numPartitions, key "key-i",
// value "value-i" (null when i % 10 == 0), header "h" = bytes "hv-i",
// timestamp 1700000000000 + i.
//
// Output: exactly one JSON line on stdout, {"ok":true,...} with exit 0, or
// {"ok":false,"error":"..."} with exit 1. Client logs (slf4j-simple) and
// stack traces go to stderr.
//
// Environment:
//   SILT_JAVA_TIMEOUT_MS   request/api/max.block timeouts (default 30000);
//                          consume waits 2x this for records.
//   SILT_JAVA_DEADLINE_MS  hard watchdog for the whole run (default 10x timeout)
//   SILT_JAVA_LOG_LEVEL    slf4j-simple level (default warn)
//   SILT_JAVA_RF           replication factor for created topics (default 3)
//   SILT_JAVA_CLIENT_CONFIG a .properties file whose entries are added to every
//                          client config built here (producer, consumer,
//                          admin), after (so overriding) the built-in ones:
//                          security.protocol, sasl.*, ssl.*. When set, the
//                          default timeout is 15000 ms instead of 30000.

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class SiltJavaClient {

    static final long BASE_TS = 1_700_000_000_000L;
    static final int PARTITIONS = 3;
    /** Silt accepts any RF; override (e.g. 1) only to sanity-check against a single real Kafka broker. */
    static final short REPLICATION = (short) envLong("SILT_JAVA_RF", 3);
    static final int LINGER_MS = 5;

    static final long TIMEOUT_MS = envLong("SILT_JAVA_TIMEOUT_MS",
            System.getenv("SILT_JAVA_CLIENT_CONFIG") == null ? 30_000L : 15_000L);
    static final long DEADLINE_MS = envLong("SILT_JAVA_DEADLINE_MS", 10 * TIMEOUT_MS);
    /** Producer delivery.timeout.ms; must be >= linger.ms + request.timeout.ms. */
    static final long DELIVERY_TIMEOUT_MS = TIMEOUT_MS + LINGER_MS + 1_000L;
    /** Extra slack on Future.get() beyond the client's own timeout. */
    static final long SLACK_MS = 5_000L;
    static final Duration CLOSE_TIMEOUT = Duration.ofMillis(Math.min(TIMEOUT_MS, 5_000L));

    static final AtomicBoolean FINISHED = new AtomicBoolean(false);

    /** Entries of $SILT_JAVA_CLIENT_CONFIG, added to every client config (loaded in main). */
    static Properties extraConfig = new Properties();

    static {
        // Must run before any Kafka class initialises slf4j.
        String level = System.getenv("SILT_JAVA_LOG_LEVEL");
        setDefaultProperty("org.slf4j.simpleLogger.defaultLogLevel",
                level == null || level.isEmpty() ? "warn" : level);
        setDefaultProperty("org.slf4j.simpleLogger.logFile", "System.err");
        setDefaultProperty("org.slf4j.simpleLogger.showDateTime", "true");
    }

    /** Thrown for verification failures; message goes into the JSON error. */
    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String msg) {
            super(msg);
        }
    }

    public static void main(String[] args) {
        startWatchdog();
        try {
            extraConfig = loadExtraConfig();
            if (args.length < 1) {
                throw new CheckFailed(usage());
            }
            String cmd = args[0];
            String json;
            switch (cmd) {
                case "roundtrip": {
                    need(args, 4, 5);
                    checkCompression(args.length > 4 ? args[4] : "none");
                    json = roundtrip(args[1], args[2], parseCount(args[3]),
                            args.length > 4 ? args[4] : "none");
                    break;
                }
                case "produce": {
                    need(args, 4, 5);
                    checkCompression(args.length > 4 ? args[4] : "none");
                    json = produceCmd(args[1], args[2], parseCount(args[3]),
                            args.length > 4 ? args[4] : "none");
                    break;
                }
                case "group-consume": {
                    need(args, 5, 7);
                    json = groupConsumeCmd(args[1], args[2], args[3], parseCount(args[4]),
                            args.length > 5 ? args[5] : "range", args.length > 6 ? args[6] : null);
                    break;
                }
                case "groups-admin": {
                    need(args, 4, 4);
                    json = groupsAdminCmd(args[1], args[2], args[3]);
                    break;
                }
                case "admin": {
                    need(args, 3, 3);
                    json = adminCmd(args[1], args[2]);
                    break;
                }
                case "transactional": {
                    need(args, 3, 3);
                    json = transactionalCmd(args[1], args[2]);
                    break;
                }
                case "consume": {
                    need(args, 4, 4);
                    json = consumeCmd(args[1], args[2], parseCount(args[3]));
                    break;
                }
                case "send": {
                    need(args, 4, 4);
                    json = sendCmd(args[1], args[2], parseCount(args[3]));
                    break;
                }
                case "create-topic": {
                    need(args, 4, 4);
                    json = createTopicCmd(args[1], args[2], parseCount(args[3]));
                    break;
                }
                case "group-offsets": {
                    need(args, 3, 3);
                    json = groupOffsetsCmd(args[1], args[2]);
                    break;
                }
                case "scram-upsert": {
                    need(args, 5, 6);
                    json = scramUpsertCmd(args[1], args[2], args[3], args[4],
                            args.length > 5 ? parseCount(args[5]) : 4096);
                    break;
                }
                case "scram-describe": {
                    need(args, 2, 3);
                    json = scramDescribeCmd(args[1], args.length > 2 ? args[2] : null);
                    break;
                }
                case "acl-create": {
                    need(args, 7, 9);
                    json = aclCreateCmd(args[1], aclBindings(args));
                    break;
                }
                case "acl-delete": {
                    need(args, 7, 9);
                    json = aclDeleteCmd(args[1], aclBindings(args));
                    break;
                }
                case "acl-describe": {
                    need(args, 2, 3);
                    json = aclDescribeCmd(args[1], args.length > 2 ? args[2] : null);
                    break;
                }
                case "produce-for": {
                    need(args, 4, 4);
                    json = produceForCmd(args[1], args[2], parseCount(args[3]));
                    break;
                }
                default:
                    throw new CheckFailed("unknown command '" + cmd + "'; " + usage());
            }
            finish(true, json);
        } catch (Throwable t) {
            if (!(t instanceof CheckFailed)) {
                t.printStackTrace(System.err);
            }
            finish(false, "\"error\":" + jsonString(describe(t)));
        }
    }

    // ---------------------------------------------------------------- commands

    static String roundtrip(String bootstrap, String topic, int count, String compression)
            throws Exception {
        if (count < 1) {
            throw new CheckFailed("roundtrip needs count >= 1");
        }
        Admin admin = Admin.create(adminProps(bootstrap));
        try {
            step("create topic " + topic);
            get(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, REPLICATION))).all(),
                    "createTopics");

            step("produce " + count);
            produce(bootstrap, topic, count, compression, PARTITIONS);

            step("consume " + count);
            int consumed;
            KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap));
            try {
                List<TopicPartition> tps = new ArrayList<>();
                for (int p = 0; p < PARTITIONS; p++) {
                    tps.add(new TopicPartition(topic, p));
                }
                consumer.assign(tps);
                consumer.seekToBeginning(tps);

                long[] nextOffset = new long[PARTITIONS];
                boolean[] seen = new boolean[count];
                int target = count / 2;
                long targetOffset = -1;
                consumed = 0;
                long deadline = System.currentTimeMillis() + 2 * TIMEOUT_MS;
                while (consumed < count && System.currentTimeMillis() < deadline) {
                    ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(500));
                    for (ConsumerRecord<String, String> r : recs) {
                        int i = verifyRecord(r, count, PARTITIONS, seen);
                        int p = r.partition();
                        if (r.offset() != nextOffset[p]) {
                            throw new CheckFailed(String.format(
                                    "partition %d: expected offset %d, got %d (key %s)",
                                    p, nextOffset[p], r.offset(), r.key()));
                        }
                        nextOffset[p]++;
                        if (r.offset() != i / PARTITIONS) {
                            throw new CheckFailed(String.format(
                                    "record %s out of order: at %s-%d offset %d, expected offset %d",
                                    r.key(), r.topic(), p, r.offset(), i / PARTITIONS));
                        }
                        if (i == target) {
                            targetOffset = r.offset();
                        }
                        consumed++;
                    }
                }
                if (consumed < count) {
                    throw new CheckFailed(String.format(
                            "timed out after %d ms: consumed %d of %d records (per-partition next offsets %s)",
                            2 * TIMEOUT_MS, consumed, count, java.util.Arrays.toString(nextOffset)));
                }
                if (consumed != count) {
                    throw new CheckFailed("consumed " + consumed + " records, expected " + count);
                }

                step("offsetsForTimes");
                TopicPartition targetTp = new TopicPartition(topic, target % PARTITIONS);
                long targetTs = BASE_TS + target;
                Map<TopicPartition, OffsetAndTimestamp> oft = consumer.offsetsForTimes(
                        Map.of(targetTp, targetTs), Duration.ofMillis(TIMEOUT_MS));
                OffsetAndTimestamp ot = oft.get(targetTp);
                if (ot == null) {
                    throw new CheckFailed("offsetsForTimes(" + targetTp + ", " + targetTs
                            + ") returned null, expected offset " + targetOffset);
                }
                if (ot.offset() != targetOffset) {
                    throw new CheckFailed("offsetsForTimes(" + targetTp + ", " + targetTs
                            + ") returned offset " + ot.offset() + ", expected " + targetOffset);
                }
                if (ot.timestamp() != targetTs) {
                    throw new CheckFailed("offsetsForTimes(" + targetTp + ", " + targetTs
                            + ") returned timestamp " + ot.timestamp());
                }

                step("endOffsets");
                Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofMillis(TIMEOUT_MS));
                long sum = 0;
                for (TopicPartition tp : tps) {
                    Long e = ends.get(tp);
                    if (e == null) {
                        throw new CheckFailed("endOffsets missing " + tp);
                    }
                    if (e != nextOffset[tp.partition()]) {
                        throw new CheckFailed("endOffsets(" + tp + ") = " + e + ", but consumed up to "
                                + nextOffset[tp.partition()]);
                    }
                    sum += e;
                }
                if (sum != count) {
                    throw new CheckFailed("endOffsets sum " + sum + " != " + count + ": " + ends);
                }
            } finally {
                consumer.close(CLOSE_TIMEOUT);
            }

            step("delete topic " + topic);
            get(admin.deleteTopics(List.of(topic)).all(), "deleteTopics");
            long deadline = System.currentTimeMillis() + Math.max(10_000L, Math.min(TIMEOUT_MS, 30_000L));
            while (true) {
                Set<String> names = get(admin.listTopics().names(), "listTopics");
                if (!names.contains(topic)) {
                    break;
                }
                if (System.currentTimeMillis() > deadline) {
                    throw new CheckFailed("topic " + topic + " still listed after deleteTopics");
                }
                Thread.sleep(250);
            }
            return "\"produced\":" + count + ",\"consumed\":" + consumed;
        } finally {
            admin.close(CLOSE_TIMEOUT);
        }
    }

    static String produceCmd(String bootstrap, String topic, int count, String compression)
            throws Exception {
        Admin admin = Admin.create(adminProps(bootstrap));
        try {
            step("create topic " + topic + " (if missing)");
            try {
                get(admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, REPLICATION))).all(),
                        "createTopics");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        } finally {
            admin.close(CLOSE_TIMEOUT);
        }
        step("produce " + count);
        int partitions = produce(bootstrap, topic, count, compression, -1);
        return "\"produced\":" + count + ",\"partitions\":" + partitions;
    }

    static String consumeCmd(String bootstrap, String topic, int count) throws Exception {
        KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap));
        try {
            step("find partitions of " + topic);
            long deadline = System.currentTimeMillis() + 2 * TIMEOUT_MS;
            List<TopicPartition> tps = partitionsOf(consumer, topic, deadline);
            step("consume " + count);
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<Integer, Long> nextOffset = new HashMap<>();
            for (TopicPartition tp : tps) {
                nextOffset.put(tp.partition(), consumer.position(tp, Duration.ofMillis(TIMEOUT_MS)));
            }
            Map<Integer, Long> start = new HashMap<>(nextOffset);
            int consumed = 0;
            while (consumed < count && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> r : recs) {
                    long want = nextOffset.get(r.partition());
                    if (r.offset() != want) {
                        throw new CheckFailed(String.format(
                                "partition %d: expected offset %d, got %d (key %s)",
                                r.partition(), want, r.offset(), r.key()));
                    }
                    nextOffset.put(r.partition(), want + 1);
                    consumed++;
                }
            }
            if (consumed < count) {
                throw new CheckFailed(String.format(
                        "timed out after %d ms: consumed %d of %d records (start %s, next %s)",
                        2 * TIMEOUT_MS, consumed, count, start, nextOffset));
            }
            step("endOffsets");
            Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofMillis(TIMEOUT_MS));
            long available = 0;
            for (TopicPartition tp : tps) {
                Long e = ends.get(tp);
                if (e == null) {
                    throw new CheckFailed("endOffsets missing " + tp);
                }
                available += e - start.get(tp.partition());
            }
            return "\"consumed\":" + consumed + ",\"partitions\":" + tps.size()
                    + ",\"available\":" + available;
        } finally {
            consumer.close(CLOSE_TIMEOUT);
        }
    }

    // ---------------------------------------------------------------- security commands

    /** Produce to an existing topic: no createTopics (which needs CREATE), partitions from metadata. */
    static String sendCmd(String bootstrap, String topic, int count) throws Exception {
        step("produce " + count + " to " + topic);
        int partitions = produce(bootstrap, topic, count, "none", -1);
        return "\"produced\":" + count + ",\"partitions\":" + partitions;
    }

    static String createTopicCmd(String bootstrap, String topics, int partitions) throws Exception {
        List<NewTopic> all = new ArrayList<>();
        StringBuilder names = new StringBuilder("[");
        for (String t : topics.split(",")) {
            if (t.isEmpty()) {
                continue;
            }
            all.add(new NewTopic(t, partitions, REPLICATION));
            if (names.length() > 1) {
                names.append(',');
            }
            names.append(jsonString(t));
        }
        check(!all.isEmpty(), "no topic names in '" + topics + "'");
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("create topics " + topics);
            get(admin.createTopics(all).all(), "createTopics");
        }
        return "\"created\":" + names.append(']');
    }

    static String groupOffsetsCmd(String bootstrap, String group) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("list offsets of group " + group);
            Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> offsets =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(),
                            "listConsumerGroupOffsets");
            long total = 0;
            int partitions = 0;
            for (org.apache.kafka.clients.consumer.OffsetAndMetadata o : offsets.values()) {
                if (o != null) {
                    total += o.offset();
                    partitions++;
                }
            }
            return "\"committed\":" + total + ",\"partitions\":" + partitions;
        }
    }

    static String scramUpsertCmd(String bootstrap, String user, String password, String mechanism,
            int iterations) throws Exception {
        org.apache.kafka.clients.admin.ScramMechanism m =
                org.apache.kafka.clients.admin.ScramMechanism.fromMechanismName(mechanism);
        check(m != org.apache.kafka.clients.admin.ScramMechanism.UNKNOWN,
                "unknown SCRAM mechanism '" + mechanism + "' (SCRAM-SHA-256, SCRAM-SHA-512)");
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("alterUserScramCredentials " + user);
            org.apache.kafka.clients.admin.UserScramCredentialAlteration upsert =
                    new org.apache.kafka.clients.admin.UserScramCredentialUpsertion(user,
                            new org.apache.kafka.clients.admin.ScramCredentialInfo(m, iterations), password);
            get(admin.alterUserScramCredentials(List.of(upsert)).all(), "alterUserScramCredentials");
        }
        return "\"user\":" + jsonString(user) + ",\"mechanism\":" + jsonString(m.mechanismName())
                + ",\"iterations\":" + iterations;
    }

    static String scramDescribeCmd(String bootstrap, String users) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("describeUserScramCredentials");
            org.apache.kafka.clients.admin.DescribeUserScramCredentialsResult result = users == null
                    ? admin.describeUserScramCredentials()
                    : admin.describeUserScramCredentials(List.of(users.split(",")));
            Map<String, org.apache.kafka.clients.admin.UserScramCredentialsDescription> all =
                    get(result.all(), "describeUserScramCredentials");
            StringBuilder sb = new StringBuilder("\"users\":{");
            boolean firstUser = true;
            for (String user : new java.util.TreeSet<>(all.keySet())) {
                if (!firstUser) {
                    sb.append(',');
                }
                firstUser = false;
                List<String> infos = new ArrayList<>();
                for (org.apache.kafka.clients.admin.ScramCredentialInfo info : all.get(user).credentialInfos()) {
                    infos.add(info.mechanism().mechanismName() + ":" + info.iterations());
                }
                java.util.Collections.sort(infos);
                sb.append(jsonString(user)).append(":[");
                for (int k = 0; k < infos.size(); k++) {
                    if (k > 0) {
                        sb.append(',');
                    }
                    sb.append(jsonString(infos.get(k)));
                }
                sb.append(']');
            }
            return sb.append('}').toString();
        }
    }

    /** acl-create/acl-delete arguments: one binding per operation. */
    static List<org.apache.kafka.common.acl.AclBinding> aclBindings(String[] args) {
        String principal = args[2];
        org.apache.kafka.common.resource.ResourceType rt =
                org.apache.kafka.common.resource.ResourceType.fromString(args[3]);
        check(rt != org.apache.kafka.common.resource.ResourceType.UNKNOWN
                && rt != org.apache.kafka.common.resource.ResourceType.ANY,
                "bad resource type '" + args[3] + "'");
        org.apache.kafka.common.resource.PatternType pt =
                org.apache.kafka.common.resource.PatternType.fromString(args[4]);
        check(pt == org.apache.kafka.common.resource.PatternType.LITERAL
                || pt == org.apache.kafka.common.resource.PatternType.PREFIXED,
                "bad pattern type '" + args[4] + "' (LITERAL, PREFIXED)");
        String name = args[5];
        String permission = args.length > 7 ? args[7] : "ALLOW";
        org.apache.kafka.common.acl.AclPermissionType perm =
                org.apache.kafka.common.acl.AclPermissionType.fromString(permission);
        check(perm == org.apache.kafka.common.acl.AclPermissionType.ALLOW
                || perm == org.apache.kafka.common.acl.AclPermissionType.DENY,
                "bad permission '" + permission + "' (ALLOW, DENY)");
        String host = args.length > 8 ? args[8] : "*";
        List<org.apache.kafka.common.acl.AclBinding> out = new ArrayList<>();
        for (String o : args[6].split(",")) {
            org.apache.kafka.common.acl.AclOperation op = org.apache.kafka.common.acl.AclOperation.fromString(o);
            check(op != org.apache.kafka.common.acl.AclOperation.UNKNOWN
                    && op != org.apache.kafka.common.acl.AclOperation.ANY,
                    "bad operation '" + o + "'");
            out.add(new org.apache.kafka.common.acl.AclBinding(
                    new org.apache.kafka.common.resource.ResourcePattern(rt, name, pt),
                    new org.apache.kafka.common.acl.AccessControlEntry(principal, host, op, perm)));
        }
        return out;
    }

    static String aclCreateCmd(String bootstrap, List<org.apache.kafka.common.acl.AclBinding> bindings)
            throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("createAcls " + bindings);
            get(admin.createAcls(bindings).all(), "createAcls");
        }
        return "\"created\":" + bindings.size();
    }

    static String aclDeleteCmd(String bootstrap, List<org.apache.kafka.common.acl.AclBinding> bindings)
            throws Exception {
        List<org.apache.kafka.common.acl.AclBindingFilter> filters = new ArrayList<>();
        for (org.apache.kafka.common.acl.AclBinding b : bindings) {
            filters.add(b.toFilter());
        }
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("deleteAcls " + filters);
            java.util.Collection<org.apache.kafka.common.acl.AclBinding> deleted =
                    get(admin.deleteAcls(filters).all(), "deleteAcls");
            return "\"deleted\":" + deleted.size();
        }
    }

    static String aclDescribeCmd(String bootstrap, String principal) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("describeAcls");
            java.util.Collection<org.apache.kafka.common.acl.AclBinding> all =
                    get(admin.describeAcls(org.apache.kafka.common.acl.AclBindingFilter.ANY).values(),
                            "describeAcls");
            List<String> rows = new ArrayList<>();
            for (org.apache.kafka.common.acl.AclBinding b : all) {
                if (principal != null && !principal.equals(b.entry().principal())) {
                    continue;
                }
                rows.add("{\"principal\":" + jsonString(b.entry().principal())
                        + ",\"host\":" + jsonString(b.entry().host())
                        + ",\"resourceType\":" + jsonString(b.pattern().resourceType().toString())
                        + ",\"patternType\":" + jsonString(b.pattern().patternType().toString())
                        + ",\"name\":" + jsonString(b.pattern().name())
                        + ",\"operation\":" + jsonString(b.entry().operation().toString())
                        + ",\"permission\":" + jsonString(b.entry().permissionType().toString()) + "}");
            }
            java.util.Collections.sort(rows);
            return "\"acls\":[" + String.join(",", rows) + "]";
        }
    }

    /**
     * One producer sends one record at a time for <millis> ms, each acknowledged before the next:
     * long enough for connections.max.reauth.ms to pass on its connection (KIP-368).
     */
    static String produceForCmd(String bootstrap, String topic, int millis) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("create topic " + topic + " (if missing)");
            try {
                get(admin.createTopics(List.of(new NewTopic(topic, 1, REPLICATION))).all(), "createTopics");
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) {
                    throw e;
                }
            }
        }
        int sent = 0;
        int acked = 0;
        long started = System.currentTimeMillis();
        KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(bootstrap, "none"));
        try {
            step("produce for " + millis + " ms");
            long end = started + millis;
            while (System.currentTimeMillis() < end) {
                ProducerRecord<String, String> rec = new ProducerRecord<>(topic, 0, "key-" + sent, "value-" + sent);
                sent++;
                try {
                    producer.send(rec).get(DELIVERY_TIMEOUT_MS + SLACK_MS, TimeUnit.MILLISECONDS);
                } catch (ExecutionException e) {
                    throw new CheckFailed("record " + (sent - 1) + " failed after " + acked + " acked, "
                            + (System.currentTimeMillis() - started) + " ms in: " + describe(e.getCause()));
                } catch (java.util.concurrent.TimeoutException e) {
                    throw new CheckFailed("record " + (sent - 1) + " not acknowledged in time");
                }
                acked++;
                Thread.sleep(20);
            }
            Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> m = producer.metrics();
            return "\"sent\":" + sent + ",\"acked\":" + acked
                    + ",\"ms\":" + (System.currentTimeMillis() - started)
                    + ",\"reauthentications\":" + metricTotal(m, "successful-reauthentication-total")
                    + ",\"failedReauthentications\":" + metricTotal(m, "failed-reauthentication-total")
                    + ",\"authentications\":" + metricTotal(m, "successful-authentication-total")
                    + ",\"connectionsCreated\":" + metricTotal(m, "connection-creation-total")
                    + ",\"connectionsClosed\":" + metricTotal(m, "connection-close-total");
        } finally {
            producer.close(CLOSE_TIMEOUT);
        }
    }

    /** The sum of a client-level ("*-metrics" group) metric, as a whole number. */
    static long metricTotal(Map<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> metrics,
            String name) {
        double sum = 0;
        for (Map.Entry<org.apache.kafka.common.MetricName, ? extends org.apache.kafka.common.Metric> e
                : metrics.entrySet()) {
            org.apache.kafka.common.MetricName n = e.getKey();
            if (n.name().equals(name) && n.group().endsWith("-metrics") && !n.group().contains("node")) {
                Object v = e.getValue().metricValue();
                if (v instanceof Number && !Double.isNaN(((Number) v).doubleValue())) {
                    sum += ((Number) v).doubleValue();
                }
            }
        }
        return Math.round(sum);
    }

    /** $SILT_JAVA_CLIENT_CONFIG's entries (none when unset). */
    static Properties loadExtraConfig() throws java.io.IOException {
        Properties p = new Properties();
        String path = System.getenv("SILT_JAVA_CLIENT_CONFIG");
        if (path == null || path.isEmpty()) {
            return p;
        }
        try (java.io.Reader r = java.nio.file.Files.newBufferedReader(java.nio.file.Path.of(path),
                StandardCharsets.UTF_8)) {
            p.load(r);
        }
        return p;
    }

    // ---------------------------------------------------------------- helpers

    /**
     * Produce records 0..count-1. If partitions < 0 the partition count is
     * taken from metadata. Returns the partition count used.
     */
    static void check(boolean cond, String what) {
        if (!cond) {
            throw new CheckFailed(what);
        }
    }

    /** Every admin API the AdminClient offers for topics, configs, cluster and log dirs. */
    static String adminCmd(String bootstrap, String topic) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("create topic");
            NewTopic nt = new NewTopic(topic, 2, REPLICATION)
                    .configs(Map.of("retention.ms", "1000000"));
            get(admin.createTopics(List.of(nt)).all(), "createTopics");

            step("describe topic configs");
            org.apache.kafka.common.config.ConfigResource res = new org.apache.kafka.common.config.ConfigResource(
                    org.apache.kafka.common.config.ConfigResource.Type.TOPIC, topic);
            org.apache.kafka.clients.admin.Config cfg = get(admin.describeConfigs(List.of(res),
                    new org.apache.kafka.clients.admin.DescribeConfigsOptions().includeSynonyms(true).includeDocumentation(true))
                    .all(), "describeConfigs").get(res);
            check(cfg.entries().size() >= 20, "expected every topic config, got " + cfg.entries().size());
            org.apache.kafka.clients.admin.ConfigEntry retention = cfg.get("retention.ms");
            check(retention != null && "1000000".equals(retention.value()), "retention.ms override: " + retention);
            check(retention.source() == org.apache.kafka.clients.admin.ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                    "retention.ms source: " + retention.source());
            check(!retention.synonyms().isEmpty(), "synonyms when asked");
            org.apache.kafka.clients.admin.ConfigEntry cleanup = cfg.get("cleanup.policy");
            check(cleanup != null && "delete".equals(cleanup.value()) && cleanup.isDefault(), "cleanup.policy default: " + cleanup);

            step("incremental alter configs");
            get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                    new org.apache.kafka.clients.admin.AlterConfigOp(new org.apache.kafka.clients.admin.ConfigEntry("retention.ms", "2000000"),
                            org.apache.kafka.clients.admin.AlterConfigOp.OpType.SET),
                    new org.apache.kafka.clients.admin.AlterConfigOp(new org.apache.kafka.clients.admin.ConfigEntry("cleanup.policy", "compact"),
                            org.apache.kafka.clients.admin.AlterConfigOp.OpType.APPEND)))).all(), "incrementalAlterConfigs");
            cfg = get(admin.describeConfigs(List.of(res)).all(), "describeConfigs").get(res);
            check("2000000".equals(cfg.get("retention.ms").value()), "retention.ms after SET: " + cfg.get("retention.ms"));
            check("delete,compact".equals(cfg.get("cleanup.policy").value()), "cleanup.policy after APPEND: " + cfg.get("cleanup.policy"));
            step("bad config refused");
            try {
                get(admin.incrementalAlterConfigs(Map.of(res, List.of(
                        new org.apache.kafka.clients.admin.AlterConfigOp(new org.apache.kafka.clients.admin.ConfigEntry("retention.ms", "soon"),
                                org.apache.kafka.clients.admin.AlterConfigOp.OpType.SET)))).all(), "incrementalAlterConfigs");
                throw new CheckFailed("retention.ms=soon was accepted");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof org.apache.kafka.common.errors.InvalidConfigurationException,
                        "expected InvalidConfigurationException, got " + describe(e.getCause()));
            }

            step("describe broker configs");
            org.apache.kafka.clients.admin.DescribeClusterResult cluster = admin.describeCluster(
                    new org.apache.kafka.clients.admin.DescribeClusterOptions().includeAuthorizedOperations(true));
            java.util.Collection<org.apache.kafka.common.Node> nodes = get(cluster.nodes(), "describeCluster");
            check(nodes.size() == 1, "one broker: " + nodes);
            String clusterId = get(cluster.clusterId(), "clusterId");
            check(clusterId != null && !clusterId.isEmpty(), "cluster id");
            check(get(cluster.controller(), "controller").id() == nodes.iterator().next().id(), "controller");
            Set<org.apache.kafka.common.acl.AclOperation> ops = get(cluster.authorizedOperations(), "authorizedOperations");
            check(ops != null && !ops.isEmpty(), "cluster authorized operations: " + ops);
            String brokerId = Integer.toString(nodes.iterator().next().id());
            org.apache.kafka.common.config.ConfigResource bres = new org.apache.kafka.common.config.ConfigResource(
                    org.apache.kafka.common.config.ConfigResource.Type.BROKER, brokerId);
            org.apache.kafka.clients.admin.Config bcfg = get(admin.describeConfigs(List.of(bres)).all(), "describeConfigs broker").get(bres);
            check(bcfg.get("num.partitions") != null && bcfg.get("log.retention.ms") != null, "broker configs: " + bcfg);

            step("create partitions");
            get(admin.createPartitions(Map.of(topic, org.apache.kafka.clients.admin.NewPartitions.increaseTo(4))).all(), "createPartitions");
            org.apache.kafka.clients.admin.TopicDescription td = get(admin.describeTopics(List.of(topic),
                    new org.apache.kafka.clients.admin.DescribeTopicsOptions().includeAuthorizedOperations(true))
                    .allTopicNames(), "describeTopics").get(topic);
            check(td.partitions().size() == 4, "4 partitions after createPartitions: " + td.partitions().size());
            check(td.authorizedOperations() != null && !td.authorizedOperations().isEmpty(), "topic authorized operations");

            step("produce then delete records");
            Properties pp = producerProps(bootstrap, "none");
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
                for (int i = 0; i < 10; i++) {
                    producer.send(new ProducerRecord<>(topic, 3, "k" + i, "v" + i)).get(TIMEOUT_MS, TimeUnit.MILLISECONDS);
                }
            }
            TopicPartition tp3 = new TopicPartition(topic, 3);
            Map<TopicPartition, org.apache.kafka.common.KafkaFuture<org.apache.kafka.clients.admin.DeletedRecords>> lows =
                    admin.deleteRecords(Map.of(tp3, org.apache.kafka.clients.admin.RecordsToDelete.beforeOffset(5))).lowWatermarks();
            long low = get(lows.get(tp3), "deleteRecords").lowWatermark();
            check(low == 5, "low watermark after deleteRecords: " + low);
            try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(consumerProps(bootstrap))) {
                long begin = consumer.beginningOffsets(List.of(tp3), Duration.ofMillis(TIMEOUT_MS)).get(tp3);
                check(begin == 5, "beginning offset after deleteRecords: " + begin);
            }

            step("describe log dirs");
            Map<Integer, Map<String, org.apache.kafka.clients.admin.LogDirDescription>> dirs =
                    get(admin.describeLogDirs(List.of(Integer.parseInt(brokerId))).allDescriptions(), "describeLogDirs");
            boolean found = dirs.values().stream().flatMap(m -> m.values().stream())
                    .anyMatch(d -> d.replicaInfos().containsKey(tp3) && d.replicaInfos().get(tp3).size() > 0);
            check(found, "log dirs list " + tp3 + " with a size: " + dirs);

            step("delete topic");
            get(admin.deleteTopics(List.of(topic)).all(), "deleteTopics");
            return "\"checked\":\"admin\"";
        }
    }

    /**
     * Consumes <count> records of <topic> in consumer group <group> (subscribe), committing
     * synchronously after each poll, with the given assignor (range, roundrobin, sticky,
     * cooperative-sticky) and optional static group.instance.id. Leaves the group on close.
     */
    static String groupConsumeCmd(String bootstrap, String topic, String group, int count, String assignor,
            String instanceId) throws Exception {
        Properties p = consumerProps(bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        String cls;
        switch (assignor) {
            case "range": cls = "org.apache.kafka.clients.consumer.RangeAssignor"; break;
            case "roundrobin": cls = "org.apache.kafka.clients.consumer.RoundRobinAssignor"; break;
            case "sticky": cls = "org.apache.kafka.clients.consumer.StickyAssignor"; break;
            case "cooperative-sticky": cls = "org.apache.kafka.clients.consumer.CooperativeStickyAssignor"; break;
            default: throw new CheckFailed("unknown assignor " + assignor);
        }
        p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, cls);
        if (instanceId != null) {
            p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, instanceId);
        }
        String session = System.getenv("SILT_JAVA_SESSION_TIMEOUT_MS");
        if (session != null) {
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, session);
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, Integer.toString(Math.max(100, Integer.parseInt(session) / 6)));
        }
        int got = 0;
        java.util.Set<Integer> partitions = new java.util.TreeSet<>();
        long deadline = System.currentTimeMillis() + 2 * TIMEOUT_MS;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(p)) {
            step("subscribe");
            consumer.subscribe(List.of(topic));
            while ((got < count || consumer.assignment().isEmpty()) && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : records) {
                    partitions.add(r.partition());
                    got++;
                }
                if (!records.isEmpty()) {
                    consumer.commitSync(Duration.ofMillis(TIMEOUT_MS));
                }
            }
            check(got >= count, "consumed " + got + " of " + count + " in group " + group);
            check(!consumer.assignment().isEmpty(), "partitions assigned in group " + group);
            step("committed");
            java.util.Set<TopicPartition> assigned = consumer.assignment();
            Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> committed =
                    consumer.committed(assigned, Duration.ofMillis(TIMEOUT_MS));
            check(committed.values().stream().allMatch(o -> o != null), "offsets committed for " + assigned);
        }
        return "\"consumed\":" + got + ",\"partitions\":" + partitions.size();
    }

    /** AdminClient on consumer groups: list, describe, offsets and lag, delete. */
    static String groupsAdminCmd(String bootstrap, String topic, String group) throws Exception {
        try (Admin admin = Admin.create(adminProps(bootstrap))) {
            step("list groups");
            java.util.Collection<org.apache.kafka.clients.admin.ConsumerGroupListing> groups =
                    get(admin.listConsumerGroups().all(), "listConsumerGroups");
            check(groups.stream().anyMatch(g -> g.groupId().equals(group)), "group listed: " + groups);
            step("describe group");
            org.apache.kafka.clients.admin.ConsumerGroupDescription d =
                    get(admin.describeConsumerGroups(List.of(group)).all(), "describeConsumerGroups").get(group);
            check(d != null, "described");
            step("list offsets and lag");
            Map<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> offsets =
                    get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata(), "listConsumerGroupOffsets");
            check(!offsets.isEmpty(), "committed offsets listed");
            Map<TopicPartition, org.apache.kafka.clients.admin.OffsetSpec> latest = new HashMap<>();
            for (TopicPartition tp : offsets.keySet()) {
                latest.put(tp, org.apache.kafka.clients.admin.OffsetSpec.latest());
            }
            Map<TopicPartition, org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo> ends =
                    get(admin.listOffsets(latest).all(), "listOffsets");
            long lag = 0;
            long committedTotal = 0;
            for (Map.Entry<TopicPartition, org.apache.kafka.clients.consumer.OffsetAndMetadata> e : offsets.entrySet()) {
                lag += ends.get(e.getKey()).offset() - e.getValue().offset();
                committedTotal += e.getValue().offset();
            }
            step("delete group");
            if (d.members().isEmpty()) {
                get(admin.deleteConsumerGroups(List.of(group)).all(), "deleteConsumerGroups");
                java.util.Collection<org.apache.kafka.clients.admin.ConsumerGroupListing> after =
                        get(admin.listConsumerGroups().all(), "listConsumerGroups");
                check(after.stream().noneMatch(g -> g.groupId().equals(group)), "group deleted: " + after);
            } else {
                // Static members do not leave on close: the group keeps them until their session
                // ends, and a group with members cannot be deleted.
                try {
                    get(admin.deleteConsumerGroups(List.of(group)).all(), "deleteConsumerGroups");
                    throw new CheckFailed("a group with members was deleted");
                } catch (ExecutionException e) {
                    check(e.getCause() instanceof org.apache.kafka.common.errors.GroupNotEmptyException,
                            "expected GroupNotEmptyException, got " + describe(e.getCause()));
                }
            }
            return "\"members\":" + d.members().size() + ","
                    + "\"state\":" + jsonString(d.state().toString()) + ",\"committed\":" + committedTotal + ",\"lag\":" + lag;
        }
    }

    /** A transactional producer must fail cleanly at initTransactions, not hang. */
    static String transactionalCmd(String bootstrap, String topic) throws Exception {
        Properties p = producerProps(bootstrap, "none");
        p.remove(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "silt-tx-test");
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, ms(TIMEOUT_MS));
        long started = System.currentTimeMillis();
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            step("initTransactions");
            try {
                producer.initTransactions();
            } catch (org.apache.kafka.common.KafkaException e) {
                long took = System.currentTimeMillis() - started;
                check(!(e instanceof org.apache.kafka.common.errors.TimeoutException),
                        "initTransactions timed out instead of failing: " + describe(e));
                return "\"refused\":" + jsonString(e.getClass().getSimpleName()) + ",\"ms\":" + took;
            }
            throw new CheckFailed("initTransactions succeeded against a broker without transactions");
        }
    }

    static int produce(String bootstrap, String topic, int count, String compression, int partitions)
            throws Exception {
        Properties props = producerProps(bootstrap, compression);
        KafkaProducer<String, String> producer = new KafkaProducer<>(props);
        try {
            if (partitions < 0) {
                // partitionsFor blocks up to max.block.ms waiting for metadata.
                List<PartitionInfo> infos = producer.partitionsFor(topic);
                if (infos == null || infos.isEmpty()) {
                    throw new CheckFailed("no partitions for topic " + topic);
                }
                partitions = infos.size();
            }
            List<Future<RecordMetadata>> futures = new ArrayList<>(count);
            for (int i = 0; i < count; i++) {
                ProducerRecord<String, String> rec = new ProducerRecord<>(
                        topic, i % partitions, BASE_TS + i, "key-" + i, valueFor(i));
                rec.headers().add("h", ("hv-" + i).getBytes(StandardCharsets.UTF_8));
                futures.add(producer.send(rec));
            }
            long deadline = System.currentTimeMillis() + DELIVERY_TIMEOUT_MS + SLACK_MS;
            for (int i = 0; i < count; i++) {
                long left = Math.max(1, deadline - System.currentTimeMillis());
                RecordMetadata md;
                try {
                    md = futures.get(i).get(left, TimeUnit.MILLISECONDS);
                } catch (ExecutionException e) {
                    throw new CheckFailed("send of record " + i + " failed: " + describe(e.getCause()));
                } catch (java.util.concurrent.TimeoutException e) {
                    throw new CheckFailed("send of record " + i + " not acknowledged in time");
                }
                if (md.partition() != i % partitions) {
                    throw new CheckFailed("record " + i + " acknowledged on partition " + md.partition()
                            + ", expected " + (i % partitions));
                }
            }
        } finally {
            producer.close(CLOSE_TIMEOUT);
        }
        return partitions;
    }

    /** Verifies a roundtrip record's contents; returns its index i. */
    static int verifyRecord(ConsumerRecord<String, String> r, int count, int partitions, boolean[] seen) {
        String key = r.key();
        if (key == null || !key.startsWith("key-")) {
            throw new CheckFailed("unexpected key " + key + " at " + where(r));
        }
        int i;
        try {
            i = Integer.parseInt(key.substring(4));
        } catch (NumberFormatException e) {
            throw new CheckFailed("unexpected key " + key + " at " + where(r));
        }
        if (i < 0 || i >= count) {
            throw new CheckFailed("key " + key + " out of range at " + where(r));
        }
        if (seen[i]) {
            throw new CheckFailed("duplicate record " + key + " at " + where(r));
        }
        seen[i] = true;
        if (r.partition() != i % partitions) {
            throw new CheckFailed(key + " on partition " + r.partition() + ", expected " + (i % partitions));
        }
        String want = valueFor(i);
        if (want == null ? r.value() != null : !want.equals(r.value())) {
            throw new CheckFailed(key + ": value " + quoteOrNull(r.value()) + ", expected "
                    + quoteOrNull(want) + " at " + where(r));
        }
        Header[] headers = r.headers().toArray();
        if (headers.length != 1) {
            throw new CheckFailed(key + ": expected 1 header, got " + headers.length + " at " + where(r));
        }
        String hv = headers[0].value() == null ? null : new String(headers[0].value(), StandardCharsets.UTF_8);
        if (!"h".equals(headers[0].key()) || !("hv-" + i).equals(hv)) {
            throw new CheckFailed(key + ": header " + headers[0].key() + "=" + quoteOrNull(hv)
                    + ", expected h=\"hv-" + i + "\" at " + where(r));
        }
        if (r.timestamp() != BASE_TS + i) {
            throw new CheckFailed(key + ": timestamp " + r.timestamp() + ", expected " + (BASE_TS + i));
        }
        if (r.timestampType() != TimestampType.CREATE_TIME) {
            throw new CheckFailed(key + ": timestamp type " + r.timestampType() + ", expected CreateTime");
        }
        return i;
    }

    static List<TopicPartition> partitionsOf(KafkaConsumer<?, ?> consumer, String topic, long deadline)
            throws InterruptedException {
        while (true) {
            List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofMillis(TIMEOUT_MS));
            if (infos != null && !infos.isEmpty()) {
                List<TopicPartition> tps = new ArrayList<>();
                for (PartitionInfo pi : infos) {
                    tps.add(new TopicPartition(topic, pi.partition()));
                }
                tps.sort((a, b) -> Integer.compare(a.partition(), b.partition()));
                return tps;
            }
            if (System.currentTimeMillis() > deadline) {
                throw new CheckFailed("topic " + topic + " not found (no partitions in metadata)");
            }
            Thread.sleep(250);
        }
    }

    static String valueFor(int i) {
        return i % 10 == 0 ? null : "value-" + i;
    }

    static Properties adminProps(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.CLIENT_ID_CONFIG, "silt-java-admin");
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, ms(TIMEOUT_MS));
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, ms(TIMEOUT_MS));
        p.putAll(extraConfig);
        return p;
    }

    static String checkCompression(String compression) {
        String c = compression.toLowerCase(Locale.ROOT);
        if (!List.of("none", "gzip", "snappy", "lz4", "zstd").contains(c)) {
            throw new CheckFailed("unknown compression type '" + compression
                    + "' (none, gzip, snappy, lz4, zstd)");
        }
        return c;
    }

    static Properties producerProps(String bootstrap, String compression) {
        String c = checkCompression(compression);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, "silt-java-producer");
        // SILT_JAVA_DEFAULT_PRODUCER=1 keeps the client's defaults: idempotence on, acks=all.
        if (!"1".equals(System.getenv("SILT_JAVA_DEFAULT_PRODUCER"))) {
            p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
            p.put(ProducerConfig.ACKS_CONFIG, "all");
        }
        p.put(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(LINGER_MS));
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, c);
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, ms(TIMEOUT_MS));
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, ms(TIMEOUT_MS));
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, ms(DELIVERY_TIMEOUT_MS));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.putAll(extraConfig);
        return p;
    }

    static Properties consumerProps(String bootstrap) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "silt-java-consumer");
        // No group.id: assign() only, no offset commits.
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
        p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, ms(TIMEOUT_MS));
        p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, ms(TIMEOUT_MS));
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.putAll(extraConfig);
        return p;
    }

    /** Bounded get() on a KafkaFuture; rethrows ExecutionException unchanged. */
    static <T> T get(org.apache.kafka.common.KafkaFuture<T> f, String what) throws Exception {
        try {
            return f.get(TIMEOUT_MS + SLACK_MS, TimeUnit.MILLISECONDS);
        } catch (java.util.concurrent.TimeoutException e) {
            throw new CheckFailed(what + " did not complete within " + (TIMEOUT_MS + SLACK_MS) + " ms");
        }
    }

    static volatile String currentStep = "start";

    static void step(String s) {
        currentStep = s;
    }

    static void startWatchdog() {
        Thread t = new Thread(() -> {
            try {
                Thread.sleep(DEADLINE_MS);
            } catch (InterruptedException e) {
                return;
            }
            finish(false, "\"error\":" + jsonString("watchdog: run exceeded " + DEADLINE_MS
                    + " ms (during: " + currentStep + ")"));
        }, "silt-watchdog");
        t.setDaemon(true);
        t.start();
    }

    /** Prints the single JSON line (once) and exits. */
    static void finish(boolean ok, String fields) {
        if (!FINISHED.compareAndSet(false, true)) {
            return;
        }
        String client = "unknown";
        // AppInfoParser moved between 3.x and 4.x; read the properties file it reads.
        try (java.io.InputStream in = SiltJavaClient.class.getClassLoader()
                .getResourceAsStream("kafka/kafka-version.properties")) {
            if (in != null) {
                Properties p = new Properties();
                p.load(in);
                client = p.getProperty("version", client);
            }
        } catch (Throwable ignored) {
            // keep "unknown"
        }
        StringBuilder sb = new StringBuilder("{\"ok\":").append(ok);
        if (!fields.isEmpty()) {
            sb.append(',').append(fields);
        }
        if (!ok) {
            sb.append(",\"step\":").append(jsonString(currentStep));
        }
        sb.append(",\"client\":").append(jsonString(client)).append('}');
        System.out.println(sb);
        System.out.flush();
        System.err.flush();
        // halt: do not wait for client threads / shutdown hooks that might hang.
        Runtime.getRuntime().halt(ok ? 0 : 1);
    }

    static String describe(Throwable t) {
        if (t instanceof ExecutionException && t.getCause() != null) {
            t = t.getCause();
        }
        if (t instanceof CheckFailed) {
            return t.getMessage();
        }
        StringBuilder sb = new StringBuilder();
        int depth = 0;
        for (Throwable c = t; c != null && depth < 4; c = c.getCause(), depth++) {
            if (depth > 0) {
                sb.append(" <- caused by: ");
            }
            sb.append(c.getClass().getName());
            if (c.getMessage() != null) {
                sb.append(": ").append(c.getMessage());
            }
            if (c.getCause() == c) {
                break;
            }
        }
        return sb.toString();
    }

    static String where(ConsumerRecord<?, ?> r) {
        return r.topic() + "-" + r.partition() + "@" + r.offset();
    }

    static String quoteOrNull(String s) {
        return s == null ? "null" : "\"" + s + "\"";
    }

    static String jsonString(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder("\"");
        for (int k = 0; k < s.length(); k++) {
            char ch = s.charAt(k);
            switch (ch) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (ch < 0x20) {
                        sb.append(String.format("\\u%04x", (int) ch));
                    } else {
                        sb.append(ch);
                    }
            }
        }
        return sb.append('"').toString();
    }

    static String ms(long v) {
        return Long.toString(v);
    }

    static int parseCount(String s) {
        try {
            int n = Integer.parseInt(s);
            if (n < 0) {
                throw new NumberFormatException();
            }
            return n;
        } catch (NumberFormatException e) {
            throw new CheckFailed("count must be a non-negative integer, got '" + s + "'");
        }
    }

    static void need(String[] args, int min, int max) {
        if (args.length < min || args.length > max) {
            throw new CheckFailed("wrong number of arguments for " + args[0] + "; " + usage());
        }
    }

    static String usage() {
        return "usage: SiltJavaClient roundtrip <bootstrap> <topic> <count> [compression] | "
                + "produce <bootstrap> <topic> <count> [compression] | consume <bootstrap> <topic> <count> | "
                + "send <bootstrap> <topic> <count> | create-topic <bootstrap> <topic>[,<topic>...] <partitions> | "
                + "group-offsets <bootstrap> <group> | "
                + "scram-upsert <bootstrap> <user> <password> <mechanism> [iterations] | scram-describe <bootstrap> [user,...] | "
                + "acl-create|acl-delete <bootstrap> <principal> <resourceType> <patternType> <name> <op[,op]> [ALLOW|DENY] [host] | "
                + "acl-describe <bootstrap> [principal] | produce-for <bootstrap> <topic> <millis>";
    }

    static long envLong(String name, long dflt) {
        String v = System.getenv(name);
        if (v == null || v.isBlank()) {
            return dflt;
        }
        try {
            long n = Long.parseLong(v.trim());
            return n > 0 ? n : dflt;
        } catch (NumberFormatException e) {
            return dflt;
        }
    }

    static void setDefaultProperty(String key, String value) {
        if (System.getProperty(key) == null) {
            System.setProperty(key, value);
        }
    }
}
