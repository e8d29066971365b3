ALTER TABLE ticket_purchases DROP CONSTRAINT ticket_purchases_credited;
ALTER TABLE ticket_purchases DROP COLUMN credited;
DROP TABLE credit_note_vat;
DROP TABLE credit_note_lines;
DROP TABLE credit_notes;
