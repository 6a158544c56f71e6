"""The gateway's request: what it takes, and a clear 400 for what it does not (never a 500)."""

import pytest

from gateway.api.serializers import ChatCompletionRequestSerializer, ModelRef, model_ref

USER = {"role": "user", "content": "Hi"}


@pytest.mark.parametrize(
    ("model", "ref"),
    [
        ("prompt:greet", ModelRef(prompt="greet")),
        ("prompt:greet@production", ModelRef(prompt="greet", label="production")),
        ("prompt:greet@3", ModelRef(prompt="greet", version=3)),
        ("local/smollm2", ModelRef(model="local/smollm2")),
    ],
)
def test_model_names_a_prompt_at_a_label_or_version_or_a_model(model, ref):
    assert model_ref(model) == ref


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        (
            {"model": "local/smollm2", "messages": [{"role": "user", "content": [[None, None]]}]},
            "messages",
            "text parts",
        ),
        ({"model": "local/smollm2", "messages": [{"role": "tool", "content": "x"}]}, "messages", "valid choice"),
        ({"model": "local/smollm2"}, "messages", "Required"),
        ({"model": "local/smollm2", "messages": [USER], "variables": {"a": 1}}, "variables", "Only a prompt"),
        ({"model": "nope", "messages": [USER]}, "model", "prompt:<name>"),
        ({"model": "local/smollm2", "messages": [USER], "tools": []}, "tools", "Not supported"),
        ({"model": "local/smollm2", "messages": [USER], "n": 2}, "n", "less than or equal to 1"),
        ({"model": "local/smollm2", "messages": [USER], "stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"model": "local/smollm2", "messages": [USER], "wat": 1}, "wat", "Unknown field"),
    ],
)
def test_a_bad_request_names_its_field(body, field, message):
    serializer = ChatCompletionRequestSerializer(data=body)

    assert not serializer.is_valid()
    assert message in str(serializer.errors[field])


def test_text_parts_are_joined_and_developer_is_sent_as_system():
    serializer = ChatCompletionRequestSerializer(
        data={
            "model": "local/smollm2",
            "messages": [
                {"role": "developer", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]},
            ],
            "max_completion_tokens": 9,
            "user": "u-1",
        }
    )

    assert serializer.is_valid(), serializer.errors
    assert serializer.validated_data["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    assert serializer.run_params() == {"max_tokens": 9}
    assert serializer.run_metadata() == {"gateway": True, "user": "u-1"}
