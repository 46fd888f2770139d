-- Every site's documents as content-addressed changes: a change written twice (by two
-- instances, or retried) is one row. `seq` is the site's commit number: every commit of a
-- site takes the next one under the lock of the site's row, so a site's commits are
-- numbered in commit order and a reader that has seen every seq up to N misses nothing by
-- reading `seq > N` next.
CREATE TABLE sites (
    site TEXT PRIMARY KEY,
    seq BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE changes (
    site TEXT NOT NULL,
    doc TEXT NOT NULL,
    hash BYTEA NOT NULL,
    bytes BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (site, doc, hash)
);
CREATE INDEX changes_by_seq ON changes (site, seq);

-- The bookkeeping trees of a site's store (signatures of changes, certificates of their
-- signers, revocations), key by key; a later write replaces the value.
CREATE TABLE entries (
    site TEXT NOT NULL,
    tree SMALLINT NOT NULL,
    key BYTEA NOT NULL,
    value BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (site, tree, key)
);
CREATE INDEX entries_by_seq ON entries (site, seq);

-- Compacted documents: one saved document per (site, doc) covering every change of the
-- document committed up to `covers`; those changes are deleted in the same transaction
-- that writes the snapshot, and the snapshot takes a new seq, so a reader that lags
-- behind the deletion reads the snapshot instead.
CREATE TABLE snapshots (
    site TEXT NOT NULL,
    doc TEXT NOT NULL,
    bytes BYTEA NOT NULL,
    covers BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (site, doc)
);
CREATE INDEX snapshots_by_seq ON snapshots (site, seq);
