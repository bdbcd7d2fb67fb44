"""What the end-to-end tests need: a real Walleot service, named by the environment.

    WALLEOT_API_URL, WALLEOT_API_KEY            a service and its test key (required by
                                                the end-to-end tests, skipped without);
                                                the suite makes a few hundred POSTs a
                                                minute, so run it with a high limit:
                                                walleot serve --rate-limit-sessions 100000
    WALLEOT_LIMITED_API_URL, WALLEOT_LIMITED_API_KEY, WALLEOT_LIMITED_CLOCK_URL
                                                a service allowing few POSTs a minute,
                                                and an address that moves its clock on
                                                61 s (the rate-limit tests)
    WALLEOT_REDIS_URL                           a Redis the RedisStore tests may write
                                                to (redis://127.0.0.1:6379/0); each test
                                                keeps to a prefix of its own and deletes
                                                its keys afterwards

WALLEOT_STATE_DIR is set to a temporary directory for the whole suite, and
WALLEOT_CUSTOMER unset: stdio payments name an installation reference of the suite's own.

`cargo test -p walleot-mcp --test python_sdk` starts both and sets these.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

import pytest


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True, scope="session")
def installation_state(tmp_path_factory):
    """The installation's customer reference is kept in a directory of the suite's own,
    never in the home directory; a test that grants it a mandate uses one of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WALLEOT_STATE_DIR", str(tmp_path_factory.mktemp("walleot-state")))
        patch.delenv("WALLEOT_CUSTOMER", raising=False)
        yield


@dataclass
class Service:
    url: str
    key: str

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.url}/v1/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as answer:
            return answer.code, json.loads(answer.read() or b"{}")

    def pay(self, session_id: str) -> None:
        status, body = self.request("POST", f"test_helpers/sessions/{session_id}/pay")
        assert status == 200, body

    def session(self, session_id: str) -> dict:
        status, body = self.request("GET", f"sessions/{session_id}")
        assert status == 200, body
        return body

    def newest_session(self) -> str | None:
        status, body = self.request("GET", "sessions?limit=1")
        assert status == 200, body
        return body["data"][0]["sessionId"] if body["data"] else None

    def exhaust_posts(self) -> None:
        """Spends the rest of the key's POST budget, until the service answers 429."""
        for _ in range(300):
            status, _ = self.request("POST", "sessions", {"amount": 100, "currency": "usd"})
            if status == 429:
                return
        raise AssertionError("the service never rate limited")


def session_of(answer) -> str:
    """The session id in the checkout link of a payment request."""
    url = answer.structured_content["paymentUrl"]
    return re.search(r"/checkout/(sess_[A-Za-z0-9]+)", url).group(1)


@pytest.fixture
def service() -> Service:
    url, key = os.environ.get("WALLEOT_API_URL"), os.environ.get("WALLEOT_API_KEY")
    if not (url and key):
        pytest.skip("WALLEOT_API_URL and WALLEOT_API_KEY name no service")
    return Service(url.rstrip("/"), key)


@dataclass
class LimitedService(Service):
    clock: str = ""

    def next_window(self) -> None:
        """Moves the service's clock on 61 s: its rate-limit window starts again."""
        with urllib.request.urlopen(urllib.request.Request(self.clock, method="POST"), timeout=10) as answer:
            assert answer.status == 200


@pytest.fixture
def limited() -> LimitedService:
    url = os.environ.get("WALLEOT_LIMITED_API_URL")
    key = os.environ.get("WALLEOT_LIMITED_API_KEY")
    clock = os.environ.get("WALLEOT_LIMITED_CLOCK_URL")
    if not (url and key and clock):
        pytest.skip("no rate-limited service named by WALLEOT_LIMITED_API_URL, _KEY and _CLOCK_URL")
    service = LimitedService(url.rstrip("/"), key, clock)
    service.next_window()
    return service


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("WALLEOT_REDIS_URL")
    if not url:
        pytest.skip("WALLEOT_REDIS_URL names no Redis (such as redis://127.0.0.1:6379/0)")
    return url


@pytest.fixture
def redis_prefix(redis_url):
    """A key prefix of this test's own; its keys are deleted afterwards."""
    import redis

    prefix = f"walleot-test:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
