"""The JSON API through FastAPI's TestClient, against a real SQLite library of scored photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.server import BASE, SAFE, SampleLibrary

from clipcrop_plugin.server import create_app


@pytest.fixture()
def client(sample: SampleLibrary, tmp_path: Path) -> TestClient:
    return TestClient(create_app(sample.library, thumbnail_dir=tmp_path / "thumbs"), base_url=BASE)


def test_list_sorted_by_improvement_with_selected_crop(client: TestClient, sample: SampleLibrary) -> None:
    r = client.get("/api/photos")
    assert r.status_code == 200
    page = r.json()
    assert page["total"] == 6 and len(page["items"]) == 6
    gains = [p["best"]["improvement"] for p in page["items"]]
    assert gains == sorted(gains, reverse=True)
    first = page["items"][0]
    assert first["name"].startswith("IMG_") and first["width"] > 0
    l, t, r_, b = first["best"]["fractions"]
    assert 0 <= l < r_ <= 1 and 0 <= t < b <= 1
    assert len(first["best"]["explanation"]) == 3


def test_list_paginates_filters_and_selects_aspect(client: TestClient) -> None:
    a = client.get("/api/photos", params={"limit": 4, "offset": 0, "sort": "path"}).json()
    b = client.get("/api/photos", params={"limit": 4, "offset": 4, "sort": "path"}).json()
    names = [p["name"] for p in a["items"] + b["items"]]
    assert names == sorted(names) and len(names) == 6 and a["total"] == 6
    square = client.get("/api/photos", params={"aspect": "1:1"}).json()
    for p in square["items"]:
        x1, y1, x2, y2 = p["best"]["box"]
        assert p["best"]["aspect"] == "1:1" and abs((x2 - x1) - (y2 - y1)) <= 1
    assert client.get("/api/photos", params={"aspect": "16:9"}).json()["total"] == 0
    assert client.get("/api/photos", params={"glob": "*IMG_0003.jpg"}).json()["total"] == 1
    assert client.get("/api/photos", params={"min_improvement": 1e9}).json()["total"] == 0
    # An unknown element is the caller's mistake: 400 with one line, not a 500.
    bad = client.get("/api/photos", params={"enhances": "sparkle"})
    assert bad.status_code == 400 and "sparkle" in bad.json()["detail"]


def test_photo_detail_has_every_candidate_ranked_with_changes(client: TestClient) -> None:
    pid = client.get("/api/photos").json()["items"][0]["id"]
    d = client.get(f"/api/photos/{pid}").json()
    assert set(d["sets"]) == {"grid", "1:1"}
    for ranked in d["sets"].values():
        assert [c["rank"] for c in ranked] == list(range(1, len(ranked) + 1))
        assert len(ranked[0]["changes"]) == 10
    assert len(d["sets"]["grid"]) > 10
    assert d["full_frame"]["aspect"] == "full" and d["scorer"] == "heuristic"
    assert d["explanation"].count(",") == 2  # three changes in words
    assert client.get("/api/photos/999999").status_code == 404


def test_thumbnail_is_upright_cached_and_revalidated(client: TestClient, sample: SampleLibrary, tmp_path: Path) -> None:
    rotated = next(p for p in client.get("/api/photos").json()["items"] if p["name"] == "IMG_0002.jpg")
    assert rotated["height"] > rotated["width"]  # EXIF orientation 6 on a landscape array
    r = client.get(f"/api/photos/{rotated['id']}/thumbnail", params={"size": 200})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert "max-age" in r.headers["cache-control"]
    from io import BytesIO

    im = Image.open(BytesIO(r.content))
    assert im.height > im.width and max(im.size) == 256  # snapped to the 256 bucket, upright
    cached = list((tmp_path / "thumbs").rglob("*.jpg"))
    assert len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    again = client.get(f"/api/photos/{rotated['id']}/thumbnail", params={"size": 256})
    assert again.content == r.content and cached[0].stat().st_mtime_ns == mtime  # not regenerated
    r304 = client.get(f"/api/photos/{rotated['id']}/thumbnail", params={"size": 256},
                      headers={"If-None-Match": r.headers["etag"]})
    assert r304.status_code == 304 and not r304.content


def test_labels_of_every_kind_land_in_the_database(client: TestClient, sample: SampleLibrary) -> None:
    pid = client.get("/api/photos").json()["items"][0]["id"]
    w, h = sample.sql("SELECT width, height FROM photos WHERE id = ?", pid)[0]
    bodies = [
        {"kind": "accept", "aspect": "1:1", "rank": 1},
        {"kind": "reject", "aspect": "grid", "rank": 2},
        {"kind": "box", "aspect": "1:1", "box": [10, 10, w - 20, h - 30]},
        {"kind": "prefer", "aspect": "grid", "rank": 3, "other_rank": 1},
    ]
    for body in bodies:
        r = client.post(f"/api/photos/{pid}/labels", json=body, headers=SAFE)
        assert r.status_code == 201, r.text
        assert r.json()["kind"] == body["kind"]
    rows = sample.sql("SELECT kind, aspect, rank, x1, y1, x2, y2, other_rank, source FROM labels ORDER BY id")
    assert [r[0] for r in rows] == ["accept", "reject", "box", "prefer"]
    assert rows[2][3:7] == (10, 10, w - 20, h - 30)
    assert rows[3][2] == 3 and rows[3][7] == 1 and rows[0][8] == "api"
    listed = client.get(f"/api/photos/{pid}/labels").json()
    assert [x["kind"] for x in listed] == ["accept", "reject", "box", "prefer"]
    # The grid learns which photos were reviewed.
    reviewed = client.get("/api/photos", params={"labelled": True}).json()
    assert reviewed["total"] == 1 and reviewed["items"][0]["label"]["kind"] == "prefer"
    assert client.get("/api/photos", params={"labelled": False}).json()["total"] == 5


def test_bad_labels_are_refused_without_writing(client: TestClient, sample: SampleLibrary) -> None:
    pid = client.get("/api/photos").json()["items"][0]["id"]
    outside = client.post(f"/api/photos/{pid}/labels", json={"kind": "box", "box": [0, 0, 99999, 10]}, headers=SAFE)
    assert outside.status_code == 400 and "not inside" in outside.json()["detail"]
    incomplete = client.post(f"/api/photos/{pid}/labels", json={"kind": "prefer", "rank": 2}, headers=SAFE)
    assert incomplete.status_code == 422
    no_rank = client.post(f"/api/photos/{pid}/labels", json={"kind": "accept", "aspect": "1:1", "rank": 9999},
                          headers=SAFE)
    assert no_rank.status_code == 400
    assert sample.sql("SELECT count(*) FROM labels") == [(0,)]


def test_score_now_stores_a_new_run(client: TestClient, sample: SampleLibrary) -> None:
    pid = client.get("/api/photos").json()["items"][0]["id"]
    runs_before = sample.sql("SELECT count(*) FROM scoring_runs WHERE photo_id = ?", pid)[0][0]
    r = client.post(f"/api/photos/{pid}/score", json={"aspects": ["16:9", "4:5"]}, headers=SAFE)
    assert r.status_code == 200, r.text
    assert set(r.json()["sets"]) == {"grid", "16:9", "4:5"}
    sets = sample.sql("SELECT aspects FROM scoring_runs WHERE photo_id = ? AND active", pid)
    assert sets and "16:9" in sets[0][0]
    assert runs_before >= 1
    assert client.post(f"/api/photos/{pid}/score", json={"aspects": ["wide-ish"]}, headers=SAFE).status_code == 400
    # A photo that can no longer be decoded: 422 with the reason, recorded as failed.
    name = client.get(f"/api/photos/{pid}").json()["name"]
    (sample.folder / name).write_bytes(b"\xff\xd8\xff truncated")
    broken = client.post(f"/api/photos/{pid}/score", json={}, headers=SAFE)
    assert broken.status_code == 422 and name in broken.json()["detail"]
    assert sample.sql("SELECT status FROM photos WHERE id = ?", pid) == [("failed",)]
    assert "16:9" in client.get("/api/info").json()["aspects"]


def test_write_and_clear_metadata(client: TestClient, sample: SampleLibrary) -> None:
    item = client.get("/api/photos").json()["items"][0]
    pid = item["id"]
    photo = sample.folder / item["name"]
    before = photo.read_bytes()
    r = client.post(f"/api/photos/{pid}/metadata", json={"aspect": "1:1", "naming": "base"}, headers=SAFE)
    assert r.status_code == 200, r.text
    sidecar = photo.with_suffix(".xmp")
    assert r.json()["files"] == [str(sidecar)]
    xml = sidecar.read_text()
    assert 'crs:HasCrop="True"' in xml or "<crs:HasCrop>True" in xml
    assert photo.read_bytes() == before  # the original is never touched in sidecar mode
    c = client.request("DELETE", f"/api/photos/{pid}/metadata", headers=SAFE)
    assert c.status_code == 200 and c.json()["cleared"] is True
    assert not sidecar.exists()  # clipcrop created it, nothing else was in it


def test_metadata_of_a_changed_photo_is_refused(client: TestClient, sample: SampleLibrary) -> None:
    item = client.get("/api/photos").json()["items"][0]
    photo = sample.folder / item["name"]
    Image.new("RGB", (300, 200), "red").save(photo, "JPEG")
    r = client.post(f"/api/photos/{item['id']}/metadata", json={}, headers=SAFE)
    assert r.status_code == 409 and "changed since it was scored" in r.json()["detail"]
    assert not list(sample.folder.glob("*.xmp"))


def test_status_info_and_openapi(client: TestClient) -> None:
    s = client.get("/api/status").json()
    assert s == {"available": False, "running": False, "detail": s["detail"], "status": {}}
    assert "clipcrop watch has not run" in s["detail"]
    info = client.get("/api/info").json()
    assert info["photos"] == 6 and info["aspects"] == ["grid", "1:1"] and len(info["elements"]) == 10
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for p in ("/api/photos", "/api/photos/{photo_id}", "/api/photos/{photo_id}/labels",
              "/api/photos/{photo_id}/metadata", "/api/photos/{photo_id}/score", "/api/status"):
        assert p in paths
    ok = paths["/api/photos/{photo_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/PhotoDetailOut")


def test_daemon_status_is_read_from_the_status_file(client: TestClient) -> None:
    import os

    from clipcrop_plugin.daemon.status import status_path, write_status

    write_status({"pid": os.getpid(), "state": "watching", "queued": 3, "updated_at": 0,
                  "process_started_at": 1e12}, status_path())
    s = client.get("/api/status").json()
    assert s["available"] is True and s["running"] is True and s["status"]["queued"] == 3


def test_review_pages_and_static_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "review.js" in page.text
    assert client.get("/photo/1").status_code == 200
    js = client.get("/static/review.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "http" not in client.get("/static/common.js").text.split("fetch(")[1][:20]  # no CDN, same origin


def test_capture_time_filters(client: TestClient, sample: SampleLibrary) -> None:
    import piexif

    photo = sample.photos[0].with_name("dated.jpg")
    Image.open(sample.photos[0]).save(photo, "JPEG", exif=piexif.dump(
        {"Exif": {piexif.ExifIFD.DateTimeOriginal: b"2024:06:01 12:30:00"}}))
    assert sample.library.suggest(photo).ok
    after = client.get("/api/photos", params={"taken_after": "2024-01-01T00:00:00"}).json()
    assert [p["name"] for p in after["items"]] == ["dated.jpg"]
    assert after["items"][0]["taken_at"] == "2024-06-01T12:30:00"
    assert client.get("/api/photos", params={"taken_before": "2023-12-31T00:00:00"}).json()["total"] == 0
    newest = client.get("/api/photos", params={"sort": "taken", "limit": 1}).json()["items"][0]
    assert newest["name"] == "dated.jpg"
    assert client.get("/api/photos", params={"taken_after": "yesterday"}).status_code == 422
