-- Documents erased fleet-wide, per site: no instance commits changes or a snapshot of one
-- again (issue 27). Written by the erasure under the lock of the site's row, which every
-- commit and compaction of the site also takes, so a commit that raced the erasure either
-- finished before it (and its rows are deleted by it) or sees this row and writes nothing.
CREATE TABLE erased (
    site TEXT NOT NULL,
    doc TEXT NOT NULL,
    at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (site, doc)
);
