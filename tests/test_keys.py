"""bot/upstream/keys.py: encryption at rest, the order keys are tried in, failover and health."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import InvalidToken

from bot.config import ConfigError, Settings
from bot.errors import InputError, NotAllowed, QueueFull, Unauthorized
from bot.jobs import Jobs
from bot.models import Origin
from bot.net.addresses import AddressPolicy
from bot.requests import ImagineRequest
from bot.responder import error_text
from bot.storage.sqlite import Store
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.keys import (
    UNHEALTHY_AFTER,
    ApiKey,
    KeyCipher,
    KeyRing,
    Upstreams,
    check_base_url,
    check_key_config,
    key_id_of,
    split_mode,
)
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import log_text

SECRET = "sk-unit-test-secret-5d1e"
OTHER = "sk-unit-other-secret-77aa"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "bot.sqlite3")
    yield store
    await store.close()


@pytest.fixture
async def upstreams() -> AsyncIterator[Upstreams]:
    upstreams = Upstreams()
    upstreams["default"] = MJClient(UpstreamConfig(base_url="https://env.example", api_key="sk-env-key-000"))
    yield upstreams
    await upstreams.aclose()


@pytest.fixture
def cipher() -> KeyCipher:
    return KeyCipher(KeyCipher.generate())


async def add(ring: KeyRing, label: str, *, guild_id: int | None = 1, priority: int = 0, **kw: Any) -> ApiKey:
    values: dict[str, Any] = {
        "base_url": "https://relay.example",
        "auth_style": "bearer",
        "mode": "",
        "secret": SECRET,
        "added_by": 99,
    }
    values.update(kw)
    return await ring.add(guild_id=guild_id, label=label, priority=priority, **values)


# ---- encryption -----------------------------------------------------------------------------------


def test_cipher_round_trips_and_the_token_does_not_contain_the_secret(cipher: KeyCipher) -> None:
    token = cipher.encrypt(SECRET)
    assert SECRET not in token and cipher.decrypt(token) == SECRET
    with pytest.raises(InvalidToken):
        KeyCipher(KeyCipher.generate()).decrypt(token)


async def test_stored_keys_are_encrypted_in_the_database_file(
    store: Store, upstreams: Upstreams, cipher: KeyCipher, tmp_path: Path
) -> None:
    ring = KeyRing(store, upstreams, cipher)
    key = await add(ring, "main")
    assert key.last4 == SECRET[-4:] and key.token not in repr(key)  # not even the ciphertext in logs
    row = await store.api_key_row(key.id)
    assert row is not None and cipher.decrypt(row["token"]) == SECRET
    await store.close()
    data = _files_bytes(tmp_path, "bot.sqlite3*")  # the database, its WAL and shared-memory files
    assert b"main" in data and SECRET.encode() not in data


def _files_bytes(folder: Path, pattern: str) -> bytes:
    return b"".join(p.read_bytes() for p in folder.glob(pattern))


async def test_adding_without_an_encryption_key_is_refused_with_a_message(store: Store, upstreams: Upstreams) -> None:
    with pytest.raises(NotAllowed) as caught:
        await add(KeyRing(store, upstreams, None), "main")
    assert caught.value.key == "admin.no_encryption_key"
    assert await store.api_key_rows() == []


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"base_url": "ftp://relay.example"}, "admin.key_bad_url_or_secret"),
        ({"secret": "sk-with a space"}, "admin.key_bad_url_or_secret"),
        ({"secret": "   "}, "admin.key_bad_secret"),
        ({"mode": "slow"}, "admin.key_bad_option"),
    ],
)
async def test_bad_key_input_is_refused_without_naming_the_secret(
    store: Store, upstreams: Upstreams, cipher: KeyCipher, changes: dict[str, Any], key: str
) -> None:
    with pytest.raises(InputError) as caught:
        await add(KeyRing(store, upstreams, cipher), "main", **changes)
    assert caught.value.key == key
    assert "sk-with" not in str(caught.value.params)


async def test_labels_are_unique_per_scope(store: Store, upstreams: Upstreams, cipher: KeyCipher) -> None:
    ring = KeyRing(store, upstreams, cipher)
    await add(ring, "main")
    await add(ring, "main", guild_id=2)
    await add(ring, "main", guild_id=None)
    with pytest.raises(InputError):
        await add(ring, "MAIN")


async def test_loading_needs_the_same_encryption_key(store: Store, upstreams: Upstreams, cipher: KeyCipher) -> None:
    await KeyRing(store, Upstreams(), None).load()  # nothing stored: no key needed
    await add(KeyRing(store, Upstreams(), cipher), "main")
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY is not set"):
        await KeyRing(store, Upstreams(), None).load()
    with pytest.raises(ConfigError, match="does not match"):
        await KeyRing(store, Upstreams(), KeyCipher(KeyCipher.generate())).load()
    ring = KeyRing(store, upstreams, cipher)
    await ring.load()
    key = ring.find("main", 1)
    assert key is not None and upstreams[key.upstream].config.api_key == SECRET


async def test_a_second_encryption_key_rotates_the_stored_keys_to_the_first(store: Store, upstreams: Upstreams) -> None:
    old, new = KeyCipher.generate(), KeyCipher.generate()
    first = await add(KeyRing(store, Upstreams(), KeyCipher(old)), "main")
    ring = KeyRing(store, upstreams, KeyCipher(f"{new}, {old}"))
    await ring.load()
    key = ring.get(first.id)
    assert key is not None and upstreams[key.upstream].config.api_key == SECRET
    row = await store.api_key_row(first.id)
    assert row is not None and row["token"] == key.token != first.token
    assert KeyCipher(new).decrypt(row["token"]) == SECRET  # the old key is no longer needed
    with pytest.raises(ConfigError, match="does not match"):
        await KeyRing(store, Upstreams(), KeyCipher(old)).load()
    again = Upstreams()
    await KeyRing(store, again, KeyCipher(new)).load()
    assert again[key.upstream].config.api_key == SECRET
    await again.aclose()


def test_the_bot_exits_2_with_one_line_when_stored_keys_cannot_be_decrypted(tmp_path: Path) -> None:
    database = tmp_path / "bot.sqlite3"
    cipher = KeyCipher(KeyCipher.generate())

    async def seed() -> None:
        store = await Store.open(database)
        await add(KeyRing(store, Upstreams(), cipher), "main")
        await store.close()

    asyncio.run(seed())
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(Path.cwd()),
        "DISCORD_TOKEN": "t",
        "MJ_API_BASE": "https://relay.example",
        "DATABASE_PATH": str(database),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "KEY_ENCRYPTION_KEY" in done.stderr


async def test_check_key_config_passes_only_with_the_right_key(tmp_path: Path) -> None:
    key_text = KeyCipher.generate()
    settings = Settings(discord_token="t", api_base="https://x.example", database_path=tmp_path / "db.sqlite3")
    store = await Store.open(settings.database_path)
    await add(KeyRing(store, Upstreams(), KeyCipher(key_text)), "main")
    await store.close()
    with pytest.raises(ConfigError, match="is not set"):
        await check_key_config(settings)
    with pytest.raises(ConfigError, match="does not match"):
        await check_key_config(replace(settings, key_encryption_key=KeyCipher.generate()))
    await check_key_config(replace(settings, key_encryption_key=key_text))


# ---- order, failover and health -------------------------------------------------------------------


async def test_chain_is_guild_keys_by_priority_then_global_then_env(
    store: Store, upstreams: Upstreams, cipher: KeyCipher
) -> None:
    ring = KeyRing(store, upstreams, cipher)
    low = await add(ring, "low", priority=1)
    high = await add(ring, "high", priority=9)
    shared = await add(ring, "shared", guild_id=None, priority=50)
    await add(ring, "elsewhere", guild_id=2, priority=99)
    off = await add(ring, "off", priority=5)
    await ring.set_enabled(off.id, False)
    assert ring.chain(1) == [high.upstream, low.upstream, shared.upstream, "default"]
    assert ring.chain(None) == [shared.upstream, "default"]


async def test_three_refusals_make_a_key_unhealthy_and_notify_once(
    store: Store, upstreams: Upstreams, cipher: KeyCipher
) -> None:
    ring = KeyRing(store, upstreams, cipher)
    told: list[ApiKey] = []

    async def notify(key: ApiKey) -> None:
        told.append(key)

    ring.on_unhealthy = notify
    key = await add(ring, "main")
    for _ in range(UNHEALTHY_AFTER + 2):
        await ring.record_refusal(key.upstream, Unauthorized("no"))
    await ring.aclose()  # waits for the notification task
    assert len(told) == 1 and told[0].label == "main" and told[0].failures == UNHEALTHY_AFTER
    assert key.upstream not in ring.chain(1)
    assert (await store.api_key_row(key.id))["healthy"] == 0  # type: ignore[index]

    await ring.set_enabled(key.id, True)
    assert ring.chain(1)[0] == key.upstream


async def test_testing_a_key_that_is_not_there_says_so(store: Store, upstreams: Upstreams, cipher: KeyCipher) -> None:
    # The message names the key ({key}): a `key=` parameter must not collide with the message key.
    check = await KeyRing(store, upstreams, cipher).check(404)
    assert check.status == "error" and isinstance(check.error, InputError)
    assert check.error.key == "admin.key_not_found" and check.error.params["key"] == "404"
    assert "404" in error_text(check.error, "en")


async def test_a_success_resets_the_failure_count(store: Store, upstreams: Upstreams, cipher: KeyCipher) -> None:
    ring = KeyRing(store, upstreams, cipher)
    key = await add(ring, "main")
    for _ in range(UNHEALTHY_AFTER - 1):
        await ring.record_refusal(key.upstream, Unauthorized("no"))
    await ring.record_success(key.upstream)
    await ring.record_refusal(key.upstream, Unauthorized("no"))
    current = ring.get(key.id)
    assert current is not None and current.healthy and current.failures == 1


class _NoTracker:
    """Jobs.submit never touches the tracker; attach_message does (not used here)."""


@pytest.fixture
async def proxies() -> AsyncIterator[tuple[SimulatedProxy, SimulatedProxy]]:
    async with (
        SimulatedProxy(flavor="relay", api_key=SECRET) as first,
        SimulatedProxy(flavor="relay", api_key=OTHER) as second,
    ):
        yield first, second


async def _ring_with_two_keys(
    store: Store, upstreams: Upstreams, cipher: KeyCipher, first: SimulatedProxy, second: SimulatedProxy
) -> tuple[KeyRing, ApiKey, ApiKey]:
    ring = KeyRing(store, upstreams, cipher)
    bad = await add(ring, "bad", base_url=first.base_url, secret="sk-not-the-right-one", priority=2)
    good = await add(ring, "good", base_url=second.base_url, secret=OTHER, priority=1)
    return ring, bad, good


async def test_jobs_fail_over_only_after_a_refusal(
    store: Store,
    upstreams: Upstreams,
    cipher: KeyCipher,
    proxies: tuple[SimulatedProxy, SimulatedProxy],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second = proxies
    ring, bad, good = await _ring_with_two_keys(store, upstreams, cipher, first, second)
    jobs = Jobs(store, upstreams, _NoTracker(), keys=ring)  # type: ignore[arg-type]
    origin = Origin(user_id=5, channel_id=6, guild_id=1, locale="en")

    record, _ = await jobs.submit(ImagineRequest(prompt="a cat"), origin)
    assert record.upstream == good.upstream
    assert len(first.submits()) == 1 and len(second.submits()) == 1
    assert ring.get(bad.id).failures == 1  # type: ignore[union-attr]

    # A busy queue is not a refusal of the key: never re-sent elsewhere.
    second.fail_next("429", path_prefix="/mj/submit")
    await ring.set_enabled(bad.id, False)
    with pytest.raises(QueueFull):
        await jobs.submit(ImagineRequest(prompt="a dog"), origin)
    assert len(second.submits()) == 2 and len(first.submits()) == 1

    # A task made from another stays on its upstream, even when that one refuses.
    with pytest.raises(Unauthorized):
        await jobs.submit(ImagineRequest(prompt="a cow"), origin, upstream=bad.upstream)
    assert len(second.submits()) == 2
    assert SECRET not in log_text(caplog) and OTHER not in log_text(caplog)


async def test_when_every_key_refuses_the_last_refusal_is_raised(
    store: Store, cipher: KeyCipher, proxies: tuple[SimulatedProxy, SimulatedProxy]
) -> None:
    first, _ = proxies
    upstreams = Upstreams()
    ring = KeyRing(store, upstreams, cipher)
    await add(ring, "bad1", base_url=first.base_url, secret="sk-not-the-right-one")
    await add(ring, "bad2", base_url=first.base_url, secret="sk-also-not-right-two")
    jobs = Jobs(store, upstreams, _NoTracker(), keys=ring)  # type: ignore[arg-type]
    try:
        with pytest.raises(Unauthorized):
            await jobs.submit(ImagineRequest(prompt="x"), Origin(user_id=1, channel_id=1, guild_id=1, locale="en"))
        assert len(first.submits()) == 2
        assert await store.count_tasks() == 0
    finally:
        await upstreams.aclose()


# ---- upstream registry ----------------------------------------------------------------------------


async def test_upstreams_create_key_clients_lazily_with_their_mode(
    store: Store, upstreams: Upstreams, cipher: KeyCipher
) -> None:
    ring = KeyRing(store, upstreams, cipher)
    key = await add(ring, "main")
    assert key.upstream in upstreams and len(upstreams) == 1  # only "default" exists yet
    client = upstreams[key.upstream]
    assert upstreams[key.upstream] is client and client.config.api_key == SECRET
    fast = upstreams.get(f"{key.upstream}@fast")
    assert fast is not None and fast.config.mode == "fast" and fast.config.path_prefix == "/mj-fast"
    assert upstreams.with_mode(key.upstream, "relax") == f"{key.upstream}@relax"
    assert upstreams.get("key:999") is None
    await ring.remove(key.id)
    assert upstreams.get(key.upstream) is None and await store.api_key_rows() == []


def test_upstream_names() -> None:
    assert split_mode("key:3@fast") == ("key:3", "fast")
    assert split_mode("default") == ("default", None)
    assert split_mode("key:3@nonsense") == ("key:3@nonsense", None)
    assert key_id_of("key:12@turbo") == 12 and key_id_of("default") is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://localhost",
        "https://10.1.2.3",
        "http://192.168.1.5",
        "http://[::1]:80",
        "http://169.254.169.254",
        "http://100.64.0.1",
        "http://2130706433:8080",
        "http://0x7f000001",
        "http://127.1",
        "http://0:8080",
        "http://[::ffff:127.0.0.1]",
        "http://[fd00::1]",
    ],
)
def test_server_admins_may_not_use_private_hosts(url: str) -> None:
    with pytest.raises(InputError) as caught:
        check_base_url(url)
    assert caught.value.key == "admin.key_private_host"


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@api.relay.example",
        "https://token@api.relay.example",
        "https://api.relay.example/?key=sk-1",
        "https://api.relay.example/#frag",
        "https://api.relay.example?",
    ],
)
def test_key_base_urls_refuse_userinfo_query_and_fragment_even_for_the_owner(url: str) -> None:
    with pytest.raises(InputError) as caught:
        check_base_url(url, private_ok=True)
    assert caught.value.key == "admin.key_url_extras"


def test_public_and_allowed_hosts_pass() -> None:
    check_base_url("https://api.relay.example")
    policy = AddressPolicy(allowed_pairs=frozenset({"127.0.0.1:8080"}))
    check_base_url("http://127.0.0.1:8080", policy)
    with pytest.raises(InputError):  # the allowed host on another port
        check_base_url("http://127.0.0.1:8081", policy)
    policy.trust("http://10.0.0.7:9000")  # the .env upstream's exact origin
    check_base_url("http://10.0.0.7:9000", policy)
    check_base_url("http://127.0.0.1:9999", private_ok=True)  # the bot owner


# ---- settings -------------------------------------------------------------------------------------


def test_key_settings_are_read_and_checked() -> None:
    base = {"DISCORD_TOKEN": "t", "MJ_API_BASE": "https://x.example"}
    key = KeyCipher.generate()
    settings = Settings.from_env(
        {
            **base,
            "KEY_ENCRYPTION_KEY": key,
            "OWNER_IDS": "1, 22",
            "KEY_ALLOWED_HOSTS": "127.0.0.1:8080, MJ.lan:443 [::1]:9",
        }
    )
    assert settings.key_encryption_key == key and key not in repr(settings)
    assert settings.owner_ids == (1, 22) and settings.key_allowed_hosts == ("127.0.0.1:8080", "mj.lan:443", "[::1]:9")
    with pytest.raises(ConfigError, match="KEY_ALLOWED_HOSTS takes host:port"):
        Settings.from_env({**base, "KEY_ALLOWED_HOSTS": "127.0.0.1"})  # a whole machine is not an exception
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY") as caught:
        Settings.from_env({**base, "KEY_ENCRYPTION_KEY": "not-a-fernet-key-secret"})
    assert "not-a-fernet-key-secret" not in str(caught.value)
    rotating = Settings.from_env({**base, "KEY_ENCRYPTION_KEY": f"{key}, {KeyCipher.generate()}"})
    assert rotating.key_encryption_key.startswith(key)
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY") as caught:
        Settings.from_env({**base, "KEY_ENCRYPTION_KEY": f"{key},not-a-fernet-key-secret"})
    assert "not-a-fernet-key-secret" not in str(caught.value) and key not in str(caught.value)
    with pytest.raises(ConfigError, match="OWNER_IDS"):
        Settings.from_env({**base, "OWNER_IDS": "me"})


async def test_processes_sharing_a_database_see_each_others_keys_and_count_refusals_together(
    tmp_path: Path, cipher: KeyCipher
) -> None:
    path = tmp_path / "shared.sqlite3"
    store_a, store_b = await Store.open(path, owner="a"), await Store.open(path, owner="b")
    up_a, up_b = Upstreams(), Upstreams()
    try:
        ring_a, ring_b = KeyRing(store_a, up_a, cipher), KeyRing(store_b, up_b, cipher)
        await ring_a.load()
        await ring_b.load()
        key = await add(ring_a, "shared")
        assert ring_b.get(key.id) is None
        await ring_b.refresh(max_age=0)
        assert ring_b.get(key.id) is not None and ring_b.chain(1) == [key.upstream]

        refusal = Unauthorized("api.unauthorized")
        await ring_a.record_refusal(key.upstream, refusal)
        await ring_b.record_refusal(key.upstream, refusal)  # a's copy does not know of this one...
        await ring_a.record_refusal(key.upstream, refusal)
        row = await store_b.api_key_row(key.id)  # ...but the count lives in the database
        assert row is not None and row["failures"] == UNHEALTHY_AFTER and not row["healthy"]

        await ring_b.remove(key.id)
        await ring_a.refresh(max_age=0)
        assert ring_a.get(key.id) is None and key.upstream not in ring_a.chain(1)
    finally:
        await up_a.aclose()
        await up_b.aclose()
        await store_a.close()
        await store_b.close()
