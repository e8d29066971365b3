DROP TABLE interventions;
DROP TABLE authorizations;
