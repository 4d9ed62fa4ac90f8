"""POST /edge/deposit: 201 reply, image checks by content and size, everything kept for read-back."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Images, SimServer

IMAGE_MESSAGES = [
    "The image field must be an image.",
    "The image field must be a file of type: jpeg, png, jpg.",
]


def test_deposit_reply_is_201_with_the_ai_result(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    reply = sim.edge("deposit", machine["api_key"], files=deposit_form())
    assert reply.status_code == 201, reply.text
    body = reply.json()
    assert body["status"] == "success"
    assert body["message"] == "Deposit processed"
    assert set(body["data"]) == {"image_url", "ai_result", "processed_at"}
    assert body["data"]["ai_result"] == {
        "deposit_id": "7f1c0c52-4f7e-4c1e-9d55-1a2b3c4d5e6f",
        "class": "bottle",
    }
    assert datetime.fromisoformat(body["data"]["processed_at"]).utcoffset() is not None


def test_read_back_has_the_image_hash_and_parsed_data(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]], images: type[Images]
) -> None:
    image = images.png(seed=5)
    data = {"deposit_id": "d-1", "detections": [{"class": "can", "score": 0.91}], "decision": "accept"}
    sim.edge(
        "deposit",
        machine["api_key"],
        files=deposit_form(image=("x.png", image, "image/png"), data=(None, json.dumps(data))),
    )
    [record] = sim.admin_ok("GET", "/deposits")
    assert record["machine_id"] == machine["id"]
    assert record["image_sha256"] == hashlib.sha256(image).hexdigest()
    assert record["image_size"] == len(image)
    assert record["image_type"] == "png"
    assert record["data"] == data
    assert record["deposit_id"] == "d-1"
    assert record["status"] == "ACCEPTED"
    assert record["session_id"] == "session-42"
    download = sim.admin("GET", f"/deposits/{record['id']}/image")
    assert download.content == image and download.headers["Content-Type"] == "image/png"


def test_image_url_serves_the_uploaded_image(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]], images: type[Images]
) -> None:
    image = images.jpeg(seed=9)
    body = sim.edge(
        "deposit", machine["api_key"], files=deposit_form(image=("i.jpg", image, "image/jpeg"))
    ).json()
    fetched = sim.http.get(body["data"]["image_url"], timeout=10)
    assert fetched.status_code == 200 and fetched.content == image


def test_type_is_decided_by_content_not_by_name_or_header(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]], images: type[Images]
) -> None:
    png_named_jpg = deposit_form(image=("photo.jpg", images.png(), "image/jpeg"))
    assert sim.edge("deposit", machine["api_key"], files=png_named_jpg).status_code == 201
    text_named_jpg = deposit_form(image=("photo.jpg", b"not really an image", "image/jpeg"))
    reply = sim.edge("deposit", machine["api_key"], files=text_named_jpg)
    assert reply.status_code == 422
    assert reply.json()["errors"] == {"image": IMAGE_MESSAGES}
    assert reply.json()["message"] == "The image field must be an image. (and 1 more error)"


def test_gif_is_an_image_but_not_an_allowed_type(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    gif = deposit_form(image=("a.gif", b"GIF89a" + b"\x00" * 32, "image/gif"))
    reply = sim.edge("deposit", machine["api_key"], files=gif)
    assert reply.status_code == 422
    assert reply.json()["errors"] == {"image": ["The image field must be a file of type: jpeg, png, jpg."]}


def test_size_limit_is_5120_kilobytes(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]], images: type[Images]
) -> None:
    at_limit = images.jpeg(size=5120 * 1024)
    assert (
        sim.edge(
            "deposit", machine["api_key"], files=deposit_form(image=("a.jpg", at_limit, "image/jpeg"))
        ).status_code
        == 201
    )
    over = images.jpeg(size=5120 * 1024 + 1)
    reply = sim.edge("deposit", machine["api_key"], files=deposit_form(image=("a.jpg", over, "image/jpeg")))
    assert reply.status_code == 422
    assert reply.json()["errors"] == {"image": ["The image field must not be greater than 5120 kilobytes."]}
    assert len(sim.admin_ok("GET", "/deposits")) == 1


@pytest.mark.parametrize(
    ("overrides", "errors"),
    [
        ({"image": None}, {"image": ["The image field is required."]}),
        ({"image": (None, "C:/images/item.jpg")}, {"image": IMAGE_MESSAGES}),
        ({"status": None}, {"status": ["The status field is required."]}),
        ({"data": None}, {"data": ["The data field is required."]}),
        ({"data": (None, "{not json")}, {"data": ["The data field must be a valid JSON string."]}),
    ],
)
def test_each_part_is_validated(
    sim: SimServer,
    machine: dict[str, Any],
    deposit_form: Callable[..., dict[str, Any]],
    overrides: dict[str, Any],
    errors: dict[str, list[str]],
) -> None:
    reply = sim.edge("deposit", machine["api_key"], files=deposit_form(**overrides))
    assert reply.status_code == 422
    assert reply.json()["errors"] == errors
    assert sim.admin_ok("GET", "/deposits") == []


def test_json_body_instead_of_multipart_lists_every_missing_part(
    sim: SimServer, machine: dict[str, Any]
) -> None:
    reply = sim.edge("deposit", machine["api_key"], json_body={"status": "ACCEPTED"})
    assert reply.status_code == 422
    assert set(reply.json()["errors"]) == {"image", "data"}


def test_parts_with_a_content_type_but_no_file_name_are_plain_fields(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    form = deposit_form(
        data=(None, json.dumps({"deposit_id": "typed-part"}), "application/json"),
        status=(None, "REJECTED", "application/octet-stream"),
    )
    reply = sim.edge("deposit", machine["api_key"], files=form)
    assert reply.status_code == 201, reply.text
    [record] = sim.admin_ok("GET", "/deposits")
    assert (record["deposit_id"], record["status"]) == ("typed-part", "REJECTED")


def test_session_id_is_optional(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    assert sim.edge("deposit", machine["api_key"], files=deposit_form(session_id=None)).status_code == 201
    assert sim.admin_ok("GET", "/deposits")[0]["session_id"] is None


def test_the_platform_does_not_deduplicate(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    for _ in range(2):
        assert sim.edge("deposit", machine["api_key"], files=deposit_form()).status_code == 201
    records = sim.admin_ok("GET", "/deposits")
    assert [r["deposit_id"] for r in records] == ["7f1c0c52-4f7e-4c1e-9d55-1a2b3c4d5e6f"] * 2


def test_read_back_can_be_filtered_by_machine(
    sim: SimServer, machine: dict[str, Any], deposit_form: Callable[..., dict[str, Any]]
) -> None:
    other = sim.create_machine(name="B")
    sim.edge("deposit", machine["api_key"], files=deposit_form())
    sim.edge("deposit", other["api_key"], files=deposit_form())
    sim.edge("deposit", other["api_key"], files=deposit_form())
    assert len(sim.admin_ok("GET", "/deposits", params={"machine_id": other["id"]})) == 2
    assert len(sim.admin_ok("GET", "/deposits", params={"machine_id": machine["id"]})) == 1
    assert sim.admin("GET", "/deposits", params={"machine_id": "x"}).status_code == 422
