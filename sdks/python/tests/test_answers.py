"""The shapes of every answer that is not the tool's result."""

from walleot import Price
from walleot import _answers as answers
from walleot._client import ServiceError
from walleot._store import PendingPayment


def pending():
    return PendingPayment(
        payment_id="pay_secret",
        session_id="sess_abc",
        payment_url="http://127.0.0.1:8080/checkout/sess_abc",
        tool="premium_analysis",
        arguments={"data": "x"},
        arguments_hash="h",
        price=Price.of(0.50, "usd"),
        subject=None,
        owner="o",
        expires_at="2026-01-01T00:30:00Z",
        expires_unix=0,
    )


def test_a_payment_request_carries_everything_a_client_needs():
    answer = answers.payment_required(pending(), Price.of(0.50, "usd"), "call `confirm_premium_analysis_payment` with this payment_id")
    assert answer["isError"] is True
    assert answer["structuredContent"] == {
        "status": "payment_required",
        "paymentId": "pay_secret",
        "paymentUrl": "http://127.0.0.1:8080/checkout/sess_abc",
        "amount": 0.5,
        "amountMinor": 50,
        "currency": "USD",
        "expiresAt": "2026-01-01T00:30:00Z",
        "tool": "premium_analysis",
        "nextStep": "call `confirm_premium_analysis_payment` with this payment_id",
    }
    text = answer["content"][0]["text"]
    assert "0.50 USD" in text and "pay_secret" in text and "/checkout/sess_abc" in text
    assert answers.payment_required(pending(), Price.of(0.5, "USD"), "x", "pending")["structuredContent"]["status"] == "pending"


def test_every_other_answer_is_an_error_with_a_status():
    p = pending()
    cases = {
        "settling": answers.settling(p, 0.2, "confirm"),
        "refused": answers.unknown_payment("add"),
        "rate_limited": answers.service_failure(ServiceError("x", 429, "rate_limited", 42)),
        "error": answers.service_failure(ServiceError("GET http://10.0.0.7:8080/v1/sessions: refused")),
    }
    for status, answer in cases.items():
        assert answer["isError"] is True, status
        assert answer["structuredContent"]["status"] == status
    assert cases["settling"]["structuredContent"]["retryAfter"] == 1
    limited = cases["rate_limited"]
    assert limited["structuredContent"]["retryAfter"] == 42
    assert "rate limited by the payment service, retry in 42 s" in limited["content"][0]["text"]
    down = cases["error"]["content"][0]["text"]
    assert "could not be reached" in down and "10.0.0.7" not in down
    assert "Nothing is charged" in cases["refused"]["content"][0]["text"]
