DROP FUNCTION authorization_begin(uuid, timestamptz, date, text);
