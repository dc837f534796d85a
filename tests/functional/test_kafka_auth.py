"""The workers' OAUTHBEARER tokens: a client-credentials grant at a real (loopback)
token endpoint, reused until shortly before they expire."""

from __future__ import annotations

import asyncio

from agents.kafka_security import KafkaSecurity
from streams.pipeline.kafka_auth import REFRESH_BEFORE_S, OidcTokenProvider
from tests.oidc import TokenEndpoint


def test_tokens_come_from_a_client_credentials_grant_and_are_reused() -> None:
    async def tokens(provider: OidcTokenProvider) -> list[str]:
        return [await provider.token() for _ in range(3)]

    with TokenEndpoint() as idp:
        security = KafkaSecurity(protocol="SASL_SSL", sasl_mechanism="OAUTHBEARER",
                                 oauth_token_url=idp.url, oauth_client_id="governor",
                                 oauth_client_secret="s3cret", oauth_scope="kafka")
        first, again, third = asyncio.run(tokens(OidcTokenProvider(security)))
        assert first == again == third and first.count(".") == 2
        [(form, authorization)] = idp.requests
        assert form == {"grant_type": ["client_credentials"], "scope": ["kafka"]}
        assert authorization == idp.basic("governor", "s3cret")


def test_a_token_about_to_expire_is_fetched_again() -> None:
    async def two(provider: OidcTokenProvider) -> tuple[str, str]:
        return await provider.token(), await provider.token()

    with TokenEndpoint(lifetime_s=int(REFRESH_BEFORE_S)) as idp:
        security = KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                                 oauth_token_url=idp.url, oauth_client_id="c",
                                 oauth_client_secret="s")
        asyncio.run(two(OidcTokenProvider(security)))
        assert len(idp.requests) == 2
