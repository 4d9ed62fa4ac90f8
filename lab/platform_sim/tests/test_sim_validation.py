"""The Laravel rule engine on its own: semantics and messages a device client will parse."""

from __future__ import annotations

import pytest

from rvm_platform_sim.validation import UploadedFile, display_name, summary_message, validate

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
GIF = b"GIF89a" + b"\x00" * 16


def test_absent_optional_fields_skip_every_rule_but_required() -> None:
    rules = {"hardware_id": "required|string|max:100", "ip_local": "nullable|ip"}
    assert validate({"hardware_id": "jet-1"}, rules) == {}
    assert validate({}, rules) == {"hardware_id": ["The hardware id field is required."]}


def test_failed_required_stops_the_other_rules_of_that_field() -> None:
    errors = validate({"name": "   "}, {"name": "required|string|max:3"})
    assert errors == {"name": ["The name field is required."]}


def test_every_failing_rule_of_a_field_is_reported_in_rule_order() -> None:
    upload = UploadedFile("notes.jpg", "image/jpeg", b"plain text")
    errors = validate({"image": upload}, {"image": "required|image|mimes:jpeg,png,jpg|max:5120"})
    assert errors == {
        "image": [
            "The image field must be an image.",
            "The image field must be a file of type: jpeg, png, jpg.",
        ]
    }


def test_mimes_goes_by_content_not_by_name() -> None:
    rules = {"image": "required|image|mimes:jpeg,png,jpg"}
    assert validate({"image": UploadedFile("photo.jpg", "image/jpeg", PNG)}, rules) == {}
    gif = validate({"image": UploadedFile("a.png", "image/png", GIF)}, rules)
    assert gif == {"image": ["The image field must be a file of type: jpeg, png, jpg."]}


def test_file_size_is_compared_in_kilobytes() -> None:
    rules = {"image": "max:1"}
    assert validate({"image": UploadedFile("a.png", "", PNG + b"\x00" * (1024 - len(PNG)))}, rules) == {}
    too_big = validate({"image": UploadedFile("a.png", "", PNG + b"\x00" * 1024)}, rules)
    assert too_big == {"image": ["The image field must not be greater than 1 kilobytes."]}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50, []),
        ("99.5", []),
        (" 42 ", []),
        ("1e2", []),
        (-1, ["The cpu field must be at least 0."]),
        (100.01, ["The cpu field must not be greater than 100."]),
        (True, ["The cpu field must be a number."]),
        ("hot", ["The cpu field must be a number."]),
        ("0x1A", ["The cpu field must be a number."]),
        ("inf", ["The cpu field must be a number."]),
    ],
)
def test_numeric_ranges(value: object, expected: list[str]) -> None:
    assert validate({"cpu": value}, {"cpu": "nullable|numeric|min:0|max:100"}).get("cpu", []) == expected


def test_nullable_lets_null_through_and_null_without_it_is_checked() -> None:
    assert validate({"ip": None}, {"ip": "nullable|ip"}) == {}
    assert validate({"ip": None}, {"ip": "ip"}) == {"ip": ["The ip field must be a valid IP address."]}


@pytest.mark.parametrize("address", ["10.147.17.5", "fd80::1", "::ffff:192.168.1.2"])
def test_valid_ip_addresses(address: str) -> None:
    assert validate({"ip": address}, {"ip": "ip"}) == {}


@pytest.mark.parametrize("address", ["10.147.17", "999.1.1.1", "host.local", "10.0.0.1/24", "fe80::1%eth0"])
def test_invalid_ip_addresses(address: str) -> None:
    assert validate({"ip": address}, {"ip": "ip"}) == {"ip": ["The ip field must be a valid IP address."]}


def test_string_length_counts_characters_not_bytes() -> None:
    assert validate({"name": "é" * 5}, {"name": "string|max:5"}) == {}
    assert validate({"name": "é" * 6}, {"name": "string|max:5"}) == {
        "name": ["The name field must not be greater than 5 characters."]
    }


def test_wildcards_expand_over_what_was_sent_and_name_the_index() -> None:
    rules = {"transactions.*.items.*.type": "required"}
    data = {"transactions": [{"items": [{"type": "can"}, {"weight": 1}]}, {"items": []}]}
    assert validate(data, rules) == {
        "transactions.0.items.1.type": ["The transactions.0.items.1.type field is required."]
    }
    assert validate({}, rules) == {}


def test_json_rule_rejects_non_json_and_non_strings() -> None:
    assert validate({"data": '{"a": 1}'}, {"data": "json"}) == {}
    assert validate({"data": "{bad"}, {"data": "json"}) == {
        "data": ["The data field must be a valid JSON string."]
    }
    assert validate({"data": "NaN"}, {"data": "json"}) == {
        "data": ["The data field must be a valid JSON string."]
    }


def test_array_accepts_objects_like_php_does() -> None:
    assert validate({"system": {"a": 1}}, {"system": "array"}) == {}
    assert validate({"system": "x"}, {"system": "array"}) == {
        "system": ["The system field must be an array."]
    }


def test_summary_message_counts_the_other_errors() -> None:
    assert summary_message({"a": ["First."]}) == "First."
    assert summary_message({"a": ["First.", "Second."]}) == "First. (and 1 more error)"
    assert summary_message({"a": ["First."], "b": ["Second.", "Third."]}) == "First. (and 2 more errors)"


def test_display_name_replaces_underscores() -> None:
    assert display_name("system.ai_models.model_name") == "system.ai models.model name"
