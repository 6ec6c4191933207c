"""Merchant webhooks: endpoints, fan-out of events into deliveries, the delivery worker."""
