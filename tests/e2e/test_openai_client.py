"""The official `openai` Python client against floopy-gateway and the fake provider.

Token counts are steered with the fake provider's `x-fake-*` request headers, which the
gateway forwards; cost and usage are then checked in the gateway's JSONL request log.
"""

from __future__ import annotations

import uuid

import openai
import pytest

from conftest import (
    GATEWAY_ID,
    LOCKED_KEY,
    LOCKED_KEY_ID,
    OPEN_KEY,
    OPEN_KEY_ID,
    OPENAI_MODEL,
    OPENAI_PROVIDER,
    ANTHROPIC_MODEL,
    ORG_ID,
    PROJECT_ID,
    UNKNOWN_KEY,
    UNKNOWN_PROJECT_ID,
    Gateway,
)

MESSAGES = [{"role": "user", "content": "Say hello."}]
HELLO = "Hello from the fake provider."

PROMPT_TOKENS = 1000
COMPLETION_TOKENS = 500
CACHED_TOKENS = 400
# gpt-4o: 2.5 USD/Mtok input, 1.25 cached input, 10 output. In micro-USD:
# (1000 - 400) * 2.5 + 400 * 1.25 + 500 * 10 = 1500 + 500 + 5000.
EXPECTED_COST_MICRO_USD = 7000

FAKE_USAGE_HEADERS = {
    "x-fake-prompt-tokens": str(PROMPT_TOKENS),
    "x-fake-completion-tokens": str(COMPLETION_TOKENS),
    "x-fake-cached-tokens": str(CACHED_TOKENS),
}


def client(gateway: Gateway, key: str = OPEN_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=key, max_retries=0, timeout=30)


def headers(**extra: str) -> dict[str, str]:
    return {"floopy-project-id": PROJECT_ID, **FAKE_USAGE_HEADERS, **extra}


def request_id_of(response_headers) -> str:
    """The gateway's request id header, checked to be a UUIDv7."""
    value = response_headers.get("floopy-request-id")
    assert value, f"no floopy-request-id header in {dict(response_headers)}"
    parsed = uuid.UUID(value)
    assert parsed.version == 7, f"floopy-request-id {value} is not a UUIDv7"
    assert str(parsed) == value, "floopy-request-id must be the hyphenated lower-case form"
    return value


def assert_success_record(record: dict, *, stream: int) -> None:
    assert record["org_id"] == ORG_ID
    assert record["project_id"] == PROJECT_ID
    assert record["api_key_id"] == OPEN_KEY_ID
    assert record["environment"] == "development"
    assert record["provider"] == OPENAI_PROVIDER
    assert record["model"] == OPENAI_MODEL
    assert record["path"] == "/v1/chat/completions"
    assert record["gateway_id"] == GATEWAY_ID
    assert record["status"] == 200
    assert record["error_code"] == ""
    assert record["stream"] == stream
    assert record["prompt_tokens"] == PROMPT_TOKENS
    assert record["completion_tokens"] == COMPLETION_TOKENS
    assert record["cached_tokens"] == CACHED_TOKENS
    assert record["cost_micro_usd"] == EXPECTED_COST_MICRO_USD
    assert record["cost_usd"] == pytest.approx(0.007, abs=1e-12)


def test_chat_completion_non_streaming(gateway: Gateway) -> None:
    c = client(gateway)

    completion = c.chat.completions.create(
        model=OPENAI_MODEL, messages=MESSAGES, extra_headers=headers()
    )
    assert completion.choices[0].message.content == HELLO
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == PROMPT_TOKENS
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert completion.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS

    raw = c.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=MESSAGES, extra_headers=headers()
    )
    assert raw.status_code == 200
    assert raw.headers.get("floopy-project-id") == PROJECT_ID
    request_id = request_id_of(raw.headers)
    parsed = raw.parse()
    assert parsed.choices[0].message.content == HELLO
    assert parsed.usage.prompt_tokens == PROMPT_TOKENS

    record = gateway.log_record(request_id)
    assert_success_record(record, stream=0)


def test_chat_completion_streaming_without_usage_request(gateway: Gateway) -> None:
    """The client did not ask for usage: the gateway asks on its behalf (to log the
    tokens) and strips the usage-only chunk, so the client sees none."""
    c = client(gateway)
    with c.chat.completions.with_streaming_response.create(
        model=OPENAI_MODEL,
        messages=MESSAGES,
        stream=True,
        extra_headers=headers(**{"x-fake-chunks": "4"}),
    ) as response:
        assert response.status_code == 200
        assert response.headers.get("content-type", "").startswith("text/event-stream")
        assert response.headers.get("floopy-project-id") == PROJECT_ID
        # What the provider received: the gateway added include_usage for itself.
        assert response.headers.get("x-received-include-usage") == "true"
        request_id = request_id_of(response.headers)
        chunks = list(response.parse())

    assert chunks, "no chunk streamed"
    content = "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )
    assert content == "tok1 tok2 tok3 tok4 "
    with_usage = [chunk for chunk in chunks if chunk.usage is not None]
    assert with_usage == [], f"usage leaked to a client that did not ask: {with_usage}"
    # Every chunk the client sees has a choice (the usage-only chunk has none).
    assert all(chunk.choices for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"

    record = gateway.log_record(request_id)
    assert_success_record(record, stream=1)


def test_chat_completion_streaming_with_usage_request(gateway: Gateway) -> None:
    """The client asked for usage: the usage chunk is passed through unchanged."""
    c = client(gateway)
    with c.chat.completions.with_streaming_response.create(
        model=OPENAI_MODEL,
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=headers(),
    ) as response:
        assert response.status_code == 200
        assert response.headers.get("x-received-include-usage") == "true"
        request_id = request_id_of(response.headers)
        chunks = list(response.parse())

    content = "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )
    assert content == "tok1 tok2 tok3 "
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == PROMPT_TOKENS
    assert last.usage.completion_tokens == COMPLETION_TOKENS
    assert last.usage.total_tokens == PROMPT_TOKENS + COMPLETION_TOKENS
    assert last.usage.prompt_tokens_details.cached_tokens == CACHED_TOKENS
    assert [chunk for chunk in chunks[:-1] if chunk.usage is not None] == []

    record = gateway.log_record(request_id)
    assert_success_record(record, stream=1)


def test_streaming_via_plain_iteration(gateway: Gateway) -> None:
    """The most common client usage: `for chunk in client...create(stream=True)`."""
    c = client(gateway)
    stream = c.chat.completions.create(
        model=OPENAI_MODEL, messages=MESSAGES, stream=True, extra_headers=headers()
    )
    chunks = list(stream)
    content = "".join(
        choice.delta.content or "" for chunk in chunks for choice in chunk.choices
    )
    assert content == "tok1 tok2 tok3 "
    assert all(chunk.usage is None for chunk in chunks)


def error_body(error: openai.APIStatusError) -> dict:
    # The client unwraps {"error": {...}} into `body`.
    assert isinstance(error.body, dict), f"error body is not a JSON object: {error.body!r}"
    return error.body


def assert_error_record(gateway: Gateway, error: openai.APIStatusError, *, key_id: str,
                        status: int, code: str) -> None:
    request_id = request_id_of(error.response.headers)
    record = gateway.log_record(request_id)
    assert record["org_id"] == ORG_ID
    assert record["api_key_id"] == key_id
    assert record["status"] == status
    assert record["error_code"] == code
    assert record["prompt_tokens"] == 0
    assert record["cost_micro_usd"] == 0


def test_locked_key_with_other_project_is_forbidden(gateway: Gateway) -> None:
    c = client(gateway, LOCKED_KEY)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        c.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            extra_headers={"floopy-project-id": UNKNOWN_PROJECT_ID},
        )
    error = caught.value
    assert error.status_code == 403
    body = error_body(error)
    assert body["code"] == "project_mismatch"
    assert body["type"] == "permission_error"
    assert error.code == "project_mismatch"
    assert_error_record(gateway, error, key_id=LOCKED_KEY_ID, status=403, code="project_mismatch")


def test_locked_key_uses_its_project(gateway: Gateway) -> None:
    """The counterpart of the 403: the locked key without a project header is
    attributed to its project."""
    c = client(gateway, LOCKED_KEY)
    raw = c.chat.completions.with_raw_response.create(
        model=OPENAI_MODEL, messages=MESSAGES, extra_headers=FAKE_USAGE_HEADERS
    )
    assert raw.status_code == 200
    assert raw.headers.get("floopy-project-id") == PROJECT_ID
    assert raw.parse().choices[0].message.content == HELLO
    record = gateway.log_record(request_id_of(raw.headers))
    assert record["project_id"] == PROJECT_ID
    assert record["api_key_id"] == LOCKED_KEY_ID
    assert record["environment"] == "production"
    assert record["cost_micro_usd"] == EXPECTED_COST_MICRO_USD


def test_unknown_key_is_unauthenticated(gateway: Gateway) -> None:
    c = client(gateway, UNKNOWN_KEY)
    with pytest.raises(openai.AuthenticationError) as caught:
        c.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            extra_headers={"floopy-project-id": PROJECT_ID},
        )
    error = caught.value
    assert error.status_code == 401
    body = error_body(error)
    assert body["code"] == "invalid_api_key"
    assert body["type"] == "authentication_error"


def test_invalid_project_header_is_bad_request(gateway: Gateway) -> None:
    c = client(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            extra_headers={"floopy-project-id": "not-a-uuid"},
        )
    error = caught.value
    assert error.status_code == 400
    body = error_body(error)
    assert body["code"] == "invalid_project_id"
    assert body["param"] == "floopy-project-id"
    assert_error_record(gateway, error, key_id=OPEN_KEY_ID, status=400, code="invalid_project_id")


def test_unknown_project_is_not_found(gateway: Gateway) -> None:
    c = client(gateway)
    with pytest.raises(openai.NotFoundError) as caught:
        c.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            extra_headers={"floopy-project-id": UNKNOWN_PROJECT_ID},
        )
    error = caught.value
    assert error.status_code == 404
    body = error_body(error)
    assert body["code"] == "project_not_found"
    assert_error_record(gateway, error, key_id=OPEN_KEY_ID, status=404, code="project_not_found")


def test_models_list(gateway: Gateway) -> None:
    c = client(gateway)
    models = c.models.list()
    ids = [model.id for model in models]
    assert ids == [OPENAI_MODEL, ANTHROPIC_MODEL]
    assert all(model.object == "model" for model in models)
