-- The minimal durable equivalent of storing one enrollment event (issue 18), one transaction per event:
-- the event row (a fresh UUID key; ON CONFLICT DO NOTHING, as an idempotent ingest needs) with its JSON text as
-- a parameter (:payload, ~626 bytes, sent with every transaction like the registry's payload), and one of the
-- 10 000 unit rows updated. Run with `pgbench -M prepared` (parsed and planned once per connection) against the
-- tables of pgbench_minimal_setup.sql; bench/registry_ingest.py does both and sets :payload with -D.
\set unit random(1, 10000)
BEGIN;
INSERT INTO minimal_events (event_id, payload) VALUES (gen_random_uuid(), :payload) ON CONFLICT (event_id) DO NOTHING;
UPDATE minimal_units SET last_seen = now(), events = events + 1 WHERE id = :unit;
COMMIT;
