"""The hot node's token check (pure logic) and where local processes find the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.hot_store import client_hot_node_token, ensure_hot_node_token
from common.settings import Settings
from serving.hot_node import READER, WRITER, TokenCheck


def test_tokens_map_to_roles_and_nothing_else_passes():
    check = TokenCheck({"r-token": READER, "w-token": WRITER})
    assert check.role_of("Bearer w-token") == WRITER and check.role_of("bearer r-token") == READER
    for presented in ("", "Bearer", "Bearer ", "w-token", "Basic w-token", "Bearer w-token2", "Bearer w-toke"):
        assert check.role_of(presented) is None, presented
    assert TokenCheck({"": READER, "w": WRITER}).role_of("Bearer ") is None  # an unset reader token opens nothing
    with pytest.raises(ValueError, match="LAKEHOUSE_HOT_NODE_TOKEN"):
        TokenCheck({"": WRITER})


def test_a_generated_token_is_kept_private_and_shared_through_the_home(tmp_path: Path):
    settings = Settings(home=tmp_path)
    assert client_hot_node_token(settings) == ""
    token = ensure_hot_node_token(settings)
    assert len(token) >= 32 and ensure_hot_node_token(settings) == token  # stable across restarts
    path = tmp_path / "run" / "hot-node.token"
    assert path.stat().st_mode & 0o777 == 0o600
    assert client_hot_node_token(settings) == token
    assert ensure_hot_node_token(Settings(home=tmp_path, hot_node_token="set")) == "set"


def test_processes_starting_at_once_agree_on_one_secret(tmp_path: Path):
    import threading

    from common.local_secret import read_or_create_secret

    path = tmp_path / "secrets" / "x.key"
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(read_or_create_secret(path))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen[0]) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["x.key"]  # no staged file left behind
