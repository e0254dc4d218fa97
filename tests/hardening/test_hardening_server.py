"""The server under hostile requests: bombs behind thumbnails, huge bodies, echoed input, Host names."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from support.server import BASE, SAFE, LiveServer, SampleLibrary, build_library

from clipcrop_plugin.server import thumbs as thumbs_module
from clipcrop_plugin.server.app import create_app
from clipcrop_plugin.server.security import MAX_BODY_BYTES

pytestmark = pytest.mark.timeout(180)


@pytest.fixture()
def sample(tmp_path: Path) -> SampleLibrary:
    lib = build_library(tmp_path, n=2)
    yield lib
    lib.library.close()


@pytest.fixture()
def client(sample: SampleLibrary, tmp_path: Path) -> TestClient:
    return TestClient(create_app(sample.library, thumbnail_dir=tmp_path / "thumbs"), base_url=BASE)


def _bomb(sample: SampleLibrary, monkeypatch: pytest.MonkeyPatch) -> int:
    """A photo over the pixel limit (within Pillow's warn-only band), refused by intake; its id."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)
    path = sample.folder / "bomb.png"
    Image.new("1", (1200, 1200)).save(path)  # 1.44 MP: Pillow itself would only warn
    s = sample.library.suggest(path)
    assert not s.ok and "decompression bomb" in (s.error or "")
    (pid,) = sample.sql("SELECT id FROM photos WHERE path = ?", str(path))[0]
    return int(pid)


def test_thumbnail_of_a_refused_bomb_is_refused_and_decoded_once(client: TestClient, sample: SampleLibrary,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    pid = _bomb(sample, monkeypatch)
    decodes = {"n": 0}
    real = thumbs_module.load_image

    def counting(*args: object, **kwargs: object) -> object:
        decodes["n"] += 1
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(thumbs_module, "load_image", counting)
    for size in (256, 256, 300, 256):  # 300 snaps to the 512 bucket: one more decode
        r = client.get(f"/api/photos/{pid}/thumbnail", params={"size": size})
        assert r.status_code == 422 and "decompression bomb" in r.json()["detail"]
    assert decodes["n"] == 2
    ok = sample.sql("SELECT id FROM photos WHERE path = ?", str(sample.photos[0]))[0][0]
    assert client.get(f"/api/photos/{ok}/thumbnail").status_code == 200


def test_a_fixed_file_is_tried_again(client: TestClient, sample: SampleLibrary,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    pid = _bomb(sample, monkeypatch)
    assert client.get(f"/api/photos/{pid}/thumbnail").status_code == 422
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)  # the limit is raised: not a bomb now
    path = sample.folder / "bomb.png"
    Image.new("1", (1200, 1200), 1).save(path)  # and the file changed
    assert client.get(f"/api/photos/{pid}/thumbnail").status_code == 200


def test_cross_site_image_requests_are_refused(client: TestClient, sample: SampleLibrary) -> None:
    pid = sample.sql("SELECT min(id) FROM photos")[0][0]
    hostile = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    assert client.get(f"/api/photos/{pid}/thumbnail", headers=hostile).status_code == 403
    own = {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    assert client.get(f"/api/photos/{pid}/thumbnail", headers=own).status_code == 200
    link = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get("/", headers=link).status_code == 200  # following a link to the review page is fine


def test_huge_body_is_413_and_nothing_is_stored(client: TestClient, sample: SampleLibrary) -> None:
    pid = sample.sql("SELECT min(id) FROM photos")[0][0]
    body = json.dumps({"kind": "accept", "rank": 1, "source": "x" * (MAX_BODY_BYTES + 10)})
    r = client.post(f"/api/photos/{pid}/labels", content=body, headers={**SAFE, "Content-Type": "application/json"})
    assert r.status_code == 413 and len(r.content) < 300
    assert sample.sql("SELECT count(*) FROM labels") == [(0,)]


def test_chunked_body_without_length_is_cut_off(sample: SampleLibrary, tmp_path: Path) -> None:
    app = create_app(sample.library, thumbnail_dir=tmp_path / "thumbs")
    pid = sample.sql("SELECT min(id) FROM photos")[0][0]
    with LiveServer(app) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("POST", f"/api/photos/{pid}/labels")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("X-Clipcrop", "1")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b"x" * 65536
        try:
            for _ in range(40):  # 2.5 MB, over the 1 MB limit
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once it has answered
        resp = conn.getresponse()
        assert resp.status == 413
        conn.close()
    assert sample.sql("SELECT count(*) FROM labels") == [(0,)]


def test_422_never_echoes_the_input(client: TestClient, sample: SampleLibrary) -> None:
    pid = sample.sql("SELECT min(id) FROM photos")[0][0]
    marker = "ECHO" * 50_000  # 200 kB, under the body limit
    for body in ({"kind": marker, "rank": 1}, {"kind": "box", "box": [marker, 1, 2, 3]},
                 {"kind": "accept", "rank": marker}):
        r = client.post(f"/api/photos/{pid}/labels", json=body, headers=SAFE)
        assert r.status_code == 422, r.text
        detail = r.json()["detail"]
        assert isinstance(detail, str) and "ECHO" not in r.text and len(r.content) < 2000, r.text[:300]
        assert detail.startswith("invalid request:")
    r = client.get("/api/photos", params={"taken_after": marker[:4000]})
    assert r.status_code == 422 and "ECHO" not in r.text and "taken_after" in r.json()["detail"]
    r = client.post(f"/api/photos/{pid}/labels", content=b"{not json" + marker.encode(),
                    headers={**SAFE, "Content-Type": "application/json"})
    assert r.status_code == 422 and "ECHO" not in r.text


def test_bracketed_ipv6_loopback_host_is_accepted(client: TestClient) -> None:
    for host in ("[::1]:8765", "[::1]", "127.0.0.1:8765", "localhost:8765"):
        assert client.get("/api/info", headers={"Host": host}).status_code == 200, host
    for host in ("[::2]:8765", "[::1].evil.example", "evil.example"):
        assert client.get("/api/info", headers={"Host": host}).status_code == 400, host
