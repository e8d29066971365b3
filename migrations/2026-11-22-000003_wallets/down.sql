DROP TABLE appointment_period_closes;
DROP TABLE appointments;
DROP TABLE ticket_purchases;
DROP TABLE credit_lots;
