-- Version 2 created approvals.outbox, the transactional outbox of the domain events (docs/events.md).
-- The kit owns that table now (services/kit/src/events/outbox-table.ts, listed before these
-- migrations, creates it if it does not exist). This file stays, doing nothing, so that version 2
-- keeps its meaning: databases migrated before have it recorded, and a new migration must not
-- take its number and be skipped there.
SELECT 1;
