DROP TABLE charges;
DROP TABLE subscription_events;
DROP TABLE subscriptions;
DROP TABLE offer_prices;
DROP TABLE offers;
DROP TABLE mandates;
DROP TABLE customers;
