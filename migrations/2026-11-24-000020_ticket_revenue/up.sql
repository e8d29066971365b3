-- What a ticket purchase's used tickets recognised so far (EUR, 487 → 706): with credit
-- notes taking tickets back between uses, the next use recognises what brings the purchase
-- to its rule's total within what it still defers, which needs this running sum.
ALTER TABLE ticket_purchases
    ADD COLUMN recognized numeric(12, 2) NOT NULL DEFAULT 0 CHECK (recognized >= 0);
UPDATE ticket_purchases
   SET recognized = CASE WHEN tickets_used >= quantity THEN net_ht
                         ELSE LEAST(net_ht, round(net_ht / quantity, 2) * tickets_used) END
 WHERE net_ht IS NOT NULL AND tickets_used > 0;
