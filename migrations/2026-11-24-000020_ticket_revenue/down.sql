ALTER TABLE ticket_purchases DROP COLUMN recognized;
