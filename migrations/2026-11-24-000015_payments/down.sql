DROP INDEX ticket_purchases_charge_idx;
ALTER TABLE ticket_purchases DROP COLUMN charge_id;
DROP TABLE refunds;
DROP TABLE payments;
DROP FUNCTION money_records_immutable();
