"""The server refuses what a hostile page, a rebinding DNS name or a path trick would need."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from support.server import BASE, SAFE, SampleLibrary

from clipcrop_plugin.errors import ConfigError
from clipcrop_plugin.server import create_app
from clipcrop_plugin.server.security import check_bind, default_allowed_hosts, is_loopback

FOREIGN = ("http://evil.example", "http://127.0.0.1:9999", "null", "https://127.0.0.1:8765")

TRICKS = (
    "/api/photos/../../../../etc/passwd",
    "/api/photos/%2e%2e%2f%2e%2e%2fetc%2fpasswd/thumbnail",
    "/api/photos/..%2F..%2Fetc%2Fpasswd/thumbnail",
    "/api/photos/%252e%252e%252fetc%252fpasswd/thumbnail",
    "/api/photos//etc/passwd/thumbnail",
    "/api/photos/1%00/thumbnail",
    "/api/photos/-1/thumbnail",
    "/api/photos/0/thumbnail",
    "/api/photos/999999/thumbnail",
    "/api/photos/1.5/thumbnail",
    "/static/../../../../etc/passwd",
    "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/static/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/static//etc/passwd",
    "/etc/passwd",
    "/api/thumbnail?path=/etc/passwd",
    "/photo/..%2f..%2fetc%2fpasswd",
)


@pytest.fixture()
def client(sample: SampleLibrary, tmp_path: Path) -> TestClient:
    return TestClient(create_app(sample.library, thumbnail_dir=tmp_path / "thumbs"), base_url=BASE)


def _first_id(client: TestClient) -> int:
    return int(client.get("/api/photos").json()["items"][0]["id"])


@pytest.fixture(scope="module")
def shared_client(shared_sample: SampleLibrary, tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(create_app(shared_sample.library, thumbnail_dir=tmp_path_factory.mktemp("t")), base_url=BASE)


def test_path_tricks_never_read_a_file(shared_client: TestClient) -> None:
    for url in TRICKS:
        r = shared_client.get(url)
        assert 400 <= r.status_code < 500, (url, r.status_code)
        assert b"root:" not in r.content


def test_only_photos_known_to_the_database_are_served(client: TestClient, sample: SampleLibrary,
                                                       tmp_path: Path) -> None:
    stranger = tmp_path / "not-in-library.jpg"
    stranger.write_bytes(sample.photos[0].read_bytes())
    # There is no way to name a file: the path parameter is an integer id, nothing else.
    assert client.get("/api/photos/1/thumbnail", params={"path": str(stranger)}).status_code == 200
    spec = client.get("/openapi.json").json()
    params = [p["name"] for op in spec["paths"].values() for m in op.values() for p in m.get("parameters", [])]
    assert "path" not in params and "file" not in params
    # A photo whose file disappeared is not served either.
    pid = _first_id(client)
    name = client.get(f"/api/photos/{pid}").json()["name"]
    (sample.folder / name).unlink()
    assert client.get(f"/api/photos/{pid}/thumbnail").status_code == 404


def test_foreign_origin_cannot_change_state(client: TestClient, sample: SampleLibrary) -> None:
    pid = _first_id(client)
    for origin, (method, path, body) in itertools.product(FOREIGN, (
        ("POST", f"/api/photos/{pid}/labels", {"kind": "accept", "rank": 1}),
        ("POST", f"/api/photos/{pid}/metadata", {}),
        ("DELETE", f"/api/photos/{pid}/metadata", None),
        ("POST", f"/api/photos/{pid}/score", {}),
    )):
        # Even with the custom header: a page that could set it would still send its Origin.
        r = client.request(method, path, json=body, headers={"Origin": origin, **SAFE})
        assert r.status_code == 403, (origin, method, path, r.status_code)
    assert sample.sql("SELECT count(*) FROM labels") == [(0,)]
    assert not list(sample.folder.glob("*.xmp"))


def test_same_origin_and_header_clients_may_change_state(client: TestClient, sample: SampleLibrary) -> None:
    pid = _first_id(client)
    body = {"kind": "accept", "rank": 1}
    assert client.post(f"/api/photos/{pid}/labels", json=body, headers={"Origin": BASE}).status_code == 201
    assert client.post(f"/api/photos/{pid}/labels", json=body, headers=SAFE).status_code == 201
    # A form post from anywhere (no Origin, no custom header) is refused.
    bare = client.post(f"/api/photos/{pid}/labels", json=body)
    assert bare.status_code == 403
    cross = client.post(f"/api/photos/{pid}/labels", json=body, headers={**SAFE, "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403
    assert sample.sql("SELECT count(*) FROM labels") == [(2,)]


def test_wrong_host_is_refused_even_for_reads(shared_client: TestClient, shared_sample: SampleLibrary) -> None:
    # DNS rebinding: evil.example resolves to 127.0.0.1, but the browser still sends its name.
    for host in ("evil.example", "evil.example:8765", "127.0.0.1.nip.io", "attacker.localhost.evil"):
        for path in ("/", "/api/photos", "/api/photos/1/thumbnail", "/openapi.json"):
            r = shared_client.get(path, headers={"Host": host})
            assert r.status_code == 400, (host, path)
        r = shared_client.post("/api/photos/1/labels", json={"kind": "accept", "rank": 1},
                               headers={"Host": host, **SAFE})
        assert r.status_code == 400
    assert shared_sample.sql("SELECT count(*) FROM labels") == [(0,)]


def test_token_is_required_when_set(sample: SampleLibrary, tmp_path: Path) -> None:
    app = create_app(sample.library, token="s3cret", thumbnail_dir=tmp_path / "t")
    client = TestClient(app, base_url=BASE)
    assert client.get("/api/photos").status_code == 401
    assert client.get("/api/photos", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/photos", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    # Static assets hold nothing private and load before the cookie exists.
    assert client.get("/static/review.css").status_code == 200
    # ?token= once: becomes an HttpOnly SameSite=Strict cookie, dropped from the address.
    r = client.get("/?token=s3cret", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert client.get("/api/photos").status_code == 200  # the client kept the cookie
    # With the token as Bearer, a non-browser client needs no custom header.
    fresh = TestClient(app, base_url=BASE)
    pid = _first_id(client)
    r = fresh.post(f"/api/photos/{pid}/labels", json={"kind": "accept", "rank": 1},
                   headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 201
    assert fresh.get("/?token=nope", follow_redirects=False).status_code == 401


def test_bind_rules() -> None:
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host)
        check_bind(host, None)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="without a token"):
            check_bind(host, None)
        check_bind(host, "tok")
    hosts = default_allowed_hosts("0.0.0.0", ["nas.local"])
    assert "0.0.0.0" not in hosts and "nas.local" in hosts and "127.0.0.1" in hosts


def test_serve_refuses_a_public_bind_without_token(tmp_path: Path) -> None:
    r = subprocess.run(
        [str(Path(sys.executable).with_name("clipcrop")), "serve", "--host", "0.0.0.0",
         "--db", f"sqlite:///{tmp_path / 'x.sqlite3'}"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 2
    assert r.stderr.startswith("error: refusing to listen on 0.0.0.0 without a token")
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x.sqlite3").exists()  # refused before touching anything


def test_raw_dot_segments_over_a_real_socket(shared_sample: SampleLibrary, tmp_path: Path) -> None:
    """httpx normalises ``..`` before sending; a raw request line reaches uvicorn unchanged."""
    import http.client

    from support.server import LiveServer

    app = create_app(shared_sample.library, thumbnail_dir=tmp_path / "t")
    with LiveServer(app) as live:
        for target in ("/static/../../../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                        "/api/photos/1/../../../../etc/passwd", "/static/..\\..\\..\\etc\\passwd"):
            conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=10)
            conn.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"127.0.0.1:{live.port}")
            conn.endheaders()
            resp = conn.getresponse()
            body = resp.read()
            conn.close()
            assert 400 <= resp.status < 500, (target, resp.status)
            assert b"root:" not in body


def test_no_page_loads_third_party_scripts(shared_client: TestClient) -> None:
    # FastAPI's /docs would pull Swagger UI from a CDN into our origin: it is switched off.
    assert shared_client.get("/docs").status_code == 404 and shared_client.get("/redoc").status_code == 404
    for page in ("/", "/photo/1"):
        html = shared_client.get(page).text
        for src in re.findall(r'<(?:script|link|img)[^>]*(?:src|href)="([^"]+)"', html):
            assert src.startswith("/static/"), (page, src)
    for asset in ("review.js", "photo.js", "common.js", "review.css"):
        text = shared_client.get(f"/static/{asset}").text
        assert "http://" not in text and "https://" not in text and "import(" not in text


def test_pages_forbid_framing_and_foreign_scripts(shared_client: TestClient) -> None:
    for path in ("/", "/api/photos", "/static/review.js"):
        h = shared_client.get(path).headers
        assert "frame-ancestors 'none'" in h["content-security-policy"]
        assert "default-src 'self'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff" and h["x-frame-options"] == "DENY"
