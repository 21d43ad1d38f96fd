"""The gateway's deny list (R-ID-09), its pure part: which events make which map lines, and when token lines go."""
from __future__ import annotations

import json

import pytest

from contracts import Envelope
from contracts.events.identity import AccountRevoked, BindingChanged, ClientRevoked, TokenRevoked
from servicekit.bus import Undeliverable, decode
from servicekit.gateway_sync import MODELS, DenyList, described, entry_for

NOW = 1_800_000_000


def test_R_ID_09_each_revocation_becomes_the_line_the_gateway_looks_up():
    deny = DenyList()
    for msg in (TokenRevoked(jti="4f1c", expires_at=NOW + 300, reason="RFC 7009"),
                ClientRevoked(client_id="cl-1", reason="revoked by an operator"),
                AccountRevoked(account_id="acc-1", reason="case 2026-17")):
        assert deny.add(*entry_for(msg), NOW)
    assert deny.lines() == ["cid:cl-1 client\n", "jti:4f1c token\n", "sub:acc-1 account\n"]
    assert deny.counts() == {"token": 1, "client": 1, "account": 1}


def test_R_ID_09_token_lines_go_once_the_token_is_dead_anyway_clients_and_accounts_stay():
    deny = DenyList()
    assert not deny.add(*entry_for(TokenRevoked(jti="dead", expires_at=NOW, reason="x")), NOW)  # expired already
    deny.add(*entry_for(TokenRevoked(jti="a", expires_at=NOW + 60, reason="x")), NOW)
    deny.add(*entry_for(TokenRevoked(jti="b", expires_at=NOW + 600, reason="x")), NOW)
    deny.add(*entry_for(ClientRevoked(client_id="cl-1", reason="x")), NOW)
    deny.add(*entry_for(AccountRevoked(account_id="acc-1", reason="x")), NOW)
    assert deny.sweep(NOW + 59) == []
    assert deny.sweep(NOW + 60) == ["jti:a"]
    assert deny.sweep(NOW + 10**9) == ["jti:b"]
    assert deny.lines() == ["cid:cl-1 client\n", "sub:acc-1 account\n"]


def test_a_repeated_revocation_adds_no_second_line_and_keeps_the_later_expiry():
    deny = DenyList()
    assert deny.add(*entry_for(TokenRevoked(jti="a", expires_at=NOW + 60, reason="x")), NOW)
    assert not deny.add(*entry_for(TokenRevoked(jti="a", expires_at=NOW + 600, reason="replay")), NOW)
    assert not deny.add(*entry_for(TokenRevoked(jti="a", expires_at=NOW + 30, reason="x")), NOW)
    assert deny.sweep(NOW + 300) == [] and len(deny.lines()) == 1


@pytest.mark.parametrize("client_id", ["cl-1 token", "cl-1;shutdown sessions", "cl-\n1", "", "x" * 257])
def test_an_id_the_map_file_or_haproxy_cli_would_split_is_undeliverable(client_id):
    with pytest.raises(Undeliverable, match="cannot be a gateway map key"):
        entry_for(ClientRevoked(client_id=client_id, reason="x"))


def test_only_whole_token_revocations_are_read_and_malformed_ones_are_undeliverable():
    partial = Envelope.wrap(BindingChanged(business_id="corp-1", account_id="acc-1", role=None), producer="identity")
    assert decode(partial.model_dump_json().encode(), MODELS) is None  # the services strike one business, not the token
    bad = Envelope.wrap(TokenRevoked(jti="a", expires_at=NOW, reason="x"), producer="identity").model_dump(mode="json")
    del bad["payload"]["expires_at"]
    with pytest.raises(Undeliverable, match="payload is not a valid identity.TokenRevoked"):
        decode(json.dumps(bad).encode(), MODELS)
    with pytest.raises(Undeliverable, match="not a valid envelope"):
        decode(b"\x00 not json", MODELS)


def test_logs_name_tokens_by_a_hash_of_their_jti_never_the_jti():
    assert described("sub:acc-1") == {"account_id": "acc-1"}
    assert described("cid:cl-1") == {"client_id": "cl-1"}
    logged = described("jti:4f1c9e")
    assert list(logged) == ["jti_sha256"] and "4f1c9e" not in logged["jti_sha256"]
