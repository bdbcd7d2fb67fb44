"""The three SDKs answer alike. Prices in tools/list, and the field names, status values
and fixed fields of every answer that is not a tool's result, must be identical; the
Python and Node SDKs promise the same texts word for word, so theirs are compared too.
The Rust SDK's texts are compared with the Python SDK's and every difference is
reported as an `SdkDifference` warning: a finding, not a broken promise.
"""

from __future__ import annotations

import re
import warnings

import pytest
from mcp.shared.exceptions import MCPError

from support import MODES, SDKS, ExampleServer, Service, Target, confirm, payment_id_of, session_of, structured, text
from test_service_trouble import closed_port

pytestmark = pytest.mark.anyio


class SdkDifference(UserWarning):
    """The SDKs answer differently where no promise of equality is made."""


# What differs from call to call: ids, links, times, waits, ports.
VARIABLE = (
    (re.compile(r"pay_[A-Za-z0-9_-]+"), "pay_<id>"),
    (re.compile(r"https?://[^\s)`'\"]+/checkout/sess_[A-Za-z0-9]+"), "<checkout link>"),
    (re.compile(r"sess_[A-Za-z0-9]+"), "sess_<id>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r"retry in \d+ s"), "retry in N s"),
)


def normalized(value):
    if isinstance(value, str):
        for pattern, placeholder in VARIABLE:
            value = pattern.sub(placeholder, value)
        return value
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    return value


def shape(answer) -> dict:
    """What must be equal across SDKs, and (separately) the words."""
    s = structured(answer)
    return {
        "isError": answer.is_error,
        "fields": sorted(s),
        "status": s.get("status"),
        "fixed": {k: s[k] for k in ("amount", "amountMinor", "currency", "tool") if k in s},
        "words": normalized({"text": text(answer), **{k: s[k] for k in ("nextStep", "message") if k in s}}),
    }


async def answered(call) -> dict:
    """The shape of a tool's answer, or the protocol error that came instead."""
    try:
        return shape(await call)
    except MCPError as refused:
        return {"form": f"JSON-RPC error {refused.error.code}: {refused.error.message}"}


async def observe(example, mode: str, service: Service) -> dict:
    """One SDK's answers in `mode` over stdio, for a client that pays in two steps."""
    server = ExampleServer(example, Target(example.sdk, mode, "stdio"), service)
    seen: dict = {}
    arguments = {"a": 1, "b": 2}
    async with server.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        seen["prices"] = {name: (tool.meta or {}).get("price") for name, tool in tools.items()}
        first = await client.call_tool("add", arguments)
        seen["payment_required"] = shape(first)
        seen["pending"] = await answered(confirm(client, mode, "add", arguments, payment_id_of(first)))
        seen["refused (unknown payment id)"] = await answered(
            confirm(client, mode, "add", arguments, "pay_forgotten_by_a_restart")
        )
        service.pay(session_of(first))
        seen["refused (a cheap payment for a dear tool)"] = await answered(
            confirm(client, mode, "premium_analysis", {"data": "x"}, payment_id_of(first))
        )
        try:
            bad = await client.call_tool("add", {"a": "not a number", "b": 1})
            seen["bad arguments"] = {"form": f"tool result, isError={bad.is_error}"}
        except MCPError as refused:
            seen["bad arguments"] = {"form": f"JSON-RPC error {refused.error.code}"}
    return seen


def compare(observed: dict[str, dict], strict_keys: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Differences that break a promise (first list) and findings (second)."""
    broken, findings = [], []
    sdks = list(observed)
    reference = sdks[0]
    for kind in observed[reference]:
        for sdk in sdks[1:]:
            ours, theirs = observed[reference].get(kind), observed[sdk].get(kind)
            if not isinstance(ours, dict) or not isinstance(theirs, dict):
                continue
            for key in set(ours) | set(theirs):
                a, b = ours.get(key), theirs.get(key)
                if a == b:
                    continue
                line = f"{kind}: {key}: {reference}={a!r} {sdk}={b!r}"
                if key == "words":
                    # Python and Node promise equal words; Rust is compared for the record.
                    (broken if {reference, sdk} == {"python", "node"} else findings).append(line)
                elif key in strict_keys or kind == "prices":
                    broken.append(line)
                else:
                    findings.append(line)
    return broken, findings


def available(examples) -> dict:
    present = {sdk: examples[sdk] for sdk in SDKS if sdk in examples}
    if len(present) < 2:
        pytest.skip(f"comparing needs two SDKs or more; configured: {sorted(present) or 'none'}")
    # Python first: it is the reference of the word-for-word promise.
    return dict(sorted(present.items(), key=lambda item: item[0] != "python"))


@pytest.mark.parametrize("mode", MODES)
async def test_every_sdk_answers_a_payment_alike(mode, examples, service):
    observed = {sdk: await observe(example, mode, service) for sdk, example in available(examples).items()}
    broken, findings = compare(observed, ("isError", "fields", "status", "fixed", "form"))
    for finding in findings:
        warnings.warn(SdkDifference(f"{mode}: {finding}"))
    assert not broken, "\n".join(broken)


async def test_every_sdk_reports_a_service_in_trouble_alike(examples, service, limited):
    observed: dict[str, dict] = {}
    down = Service(f"http://127.0.0.1:{closed_port()}", service.key)
    for sdk, example in available(examples).items():
        seen = observed.setdefault(sdk, {})
        for kind, against in (("error (service down)", down), ("rate_limited", limited)):
            server = ExampleServer(example, Target(sdk, "two-step", "stdio"), against)
            async with server.client() as client:
                if against is limited:
                    limited.exhaust_posts()
                seen[kind] = shape(await client.call_tool("add", {"a": 1, "b": 1}))
    broken, findings = compare(observed, ("isError", "fields", "status"))
    for finding in findings:
        warnings.warn(SdkDifference(finding))
    assert not broken, "\n".join(broken)
