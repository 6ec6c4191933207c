"""Merchant connector accounts (a merchant's account at one PSP, credentials sealed by the
vault) and the routing rules that choose among them, as in Hyperswitch, over Stripe-style
/v1/connector_accounts and /v1/routing_rules. `service.load_routing` feeds the pure
`payrail.connectors.routing.route`; `service.Connectors` builds the connector that
talks to an account's provider."""
