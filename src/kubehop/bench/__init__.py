"""``kubehop bench``: downtime and migration time of kubehop's strategies against baselines,
measured on the testbed with the orc8r/agw pair."""
