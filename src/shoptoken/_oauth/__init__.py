"""The Shopify OAuth clients and what they share.

`_admin` (`ShopifyOAuth`: install, token exchange, migration, refresh),
`_customer` and `_discovery` (`CustomerAccountOAuth`), `_session_token`
(App Bridge session JWTs), `_redirect` (the authorization-code callback:
install URL and HMAC-verified redirect query), `_pkce`, and
`_token_endpoint` (one POST to a token endpoint, its answer mapped into the
exception tree and the three refresh outcomes).
"""
