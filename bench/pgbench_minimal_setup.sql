-- The tables of the minimal durable equivalent of storing one enrollment event (issue 18): the database's own
-- limit, measured with pgbench (bench/pgbench_minimal_event.sql) beside the registry's ingest by
-- bench/registry_ingest.py, which creates a database of its own for them and runs this file there.
-- One row per event (a unique UUID key and the event's JSON text), one row per unit (10 000 units), updated by
-- each event like the registry's units row; fillfactor 80 leaves room for HOT updates, as the registry's has.
CREATE TABLE minimal_events (event_id uuid PRIMARY KEY, payload text NOT NULL);
CREATE TABLE minimal_units (id integer PRIMARY KEY, last_seen timestamptz, events bigint NOT NULL DEFAULT 0)
    WITH (fillfactor = 80);
INSERT INTO minimal_units (id) SELECT generate_series(1, 10000);
VACUUM ANALYZE minimal_units;
