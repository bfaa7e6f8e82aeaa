-- schnitzel durable store, schema v3 (before segments): tables and meta as written by store.py of
-- commit 5ebae93, for the v3 -> v4 migration test. Rows are added by the test.
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value TEXT);
CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, key VARCHAR NOT NULL,
        stream_id VARCHAR, seq BIGINT, epoch BIGINT, kind VARCHAR, schema VARCHAR,
        content_type VARCHAR, stamp_ns BIGINT, frame_id VARCHAR, packet_id VARCHAR, payload BLOB,
        meta TEXT, payload_ref TEXT, size INTEGER NOT NULL, sinks VARCHAR NOT NULL,
        enq_ns BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        state INTEGER NOT NULL DEFAULT 0, avail_ns BIGINT NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX ix_queue_key ON queue(key);
CREATE TABLE dead (id INTEGER PRIMARY KEY, key VARCHAR NOT NULL,
        stream_id VARCHAR, seq BIGINT, epoch BIGINT, kind VARCHAR, schema VARCHAR,
        content_type VARCHAR, stamp_ns BIGINT, frame_id VARCHAR, packet_id VARCHAR, payload BLOB,
        meta TEXT, payload_ref TEXT, size INTEGER NOT NULL, sinks VARCHAR NOT NULL,
        enq_ns BIGINT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
        reason TEXT NOT NULL, dead_ns BIGINT NOT NULL);
CREATE TABLE counters (name VARCHAR PRIMARY KEY, value BIGINT NOT NULL DEFAULT 0);
CREATE TABLE ledger_blocks (id INTEGER PRIMARY KEY, delivered_ns BIGINT NOT NULL,
    n INTEGER NOT NULL, hashes BLOB NOT NULL);
INSERT INTO meta(key, value) VALUES ('kind', 'schnitzel.durable_store');
INSERT INTO meta(key, value) VALUES ('schema_version', '3');
INSERT INTO counters(name, value) VALUES ('accepted', 0);
INSERT INTO counters(name, value) VALUES ('bytes', 0);
INSERT INTO counters(name, value) VALUES ('dead', 0);
INSERT INTO counters(name, value) VALUES ('dead_lettered', 0);
INSERT INTO counters(name, value) VALUES ('delivered', 0);
INSERT INTO counters(name, value) VALUES ('depth', 0);
INSERT INTO counters(name, value) VALUES ('dropped_overflow', 0);
INSERT INTO counters(name, value) VALUES ('duplicates', 0);
INSERT INTO counters(name, value) VALUES ('nacks', 0);
INSERT INTO counters(name, value) VALUES ('purged', 0);
INSERT INTO counters(name, value) VALUES ('redriven', 0);
INSERT INTO counters(name, value) VALUES ('rejected_full', 0);
