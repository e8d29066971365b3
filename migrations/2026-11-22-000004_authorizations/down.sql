DROP FUNCTION authorization_snapshot(uuid, timestamptz, date, text);
DROP TABLE interventions;
DROP TABLE authorizations;
