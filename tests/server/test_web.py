"""The review app through HTTP (in-process): auth, CSRF, reviews, escaping, species, fleet, API."""

from __future__ import annotations

import base64
import json
import re
import tracemalloc
from datetime import datetime, timezone

import httpx
import pytest
import tomllib
from fastapi.testclient import TestClient

from biovita.detection import detections_topic, utc_now
from server_sync.auth import hash_password
from server_sync.config import WebSettings
from server_sync.records import Clip, DeadLetter, IngestUnit, Role, User, Verdict
from server_sync.web.app import create_app, uvicorn_options
from server_sync.web.security import COOKIE
from tests.server.factories import status
from tests.server.live import LiveServer
from tests.server.seed import PASSWORDS, seed, silent_flac


@pytest.fixture
def world(sqlite_store, tmp_path):
    return seed(sqlite_store, tmp_path)


@pytest.fixture
def app(sqlite_store, world, tmp_path):
    return create_app(sqlite_store, world.clips, world.catalogue, b"k" * 32, cache_dir=tmp_path)


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(app, user="ann") -> TestClient:
    client = TestClient(app)
    form = client.get("/login")
    response = client.post(
        "/login",
        data={"username": user, "password": PASSWORDS[user], "csrf_token": _csrf(form.text)},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return client


def test_pages_and_api_need_a_login(app):
    client = TestClient(app)
    response = client.get("/detections?species=sp_owl", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/detections%3Fspecies%3Dsp_owl"
    assert client.get("/api/detections").status_code == 401
    assert client.get("/api/health").json()["ok"] is True


def test_wrong_password_and_forged_cookie_are_refused(app):
    client = TestClient(app)
    form = client.get("/login")
    bad = client.post(
        "/login", data={"username": "ann", "password": "nope-nope", "csrf_token": _csrf(form.text)}
    )
    assert bad.status_code == 400 and "Wrong user name or password" in bad.text
    unknown = client.post(
        "/login", data={"username": "eve", "password": "whatever1", "csrf_token": _csrf(form.text)}
    )
    assert unknown.status_code == 400
    no_token = client.post("/login", data={"username": "ann", "password": PASSWORDS["ann"]})
    assert no_token.status_code == 403
    client.cookies.set(COOKIE, '["ann","admin","x",99999999999].forged')
    assert client.get("/api/stats").status_code == 401


def test_repeated_wrong_passwords_lock_that_user_name_for_a_while(app):
    client = TestClient(app)
    token = _csrf(client.get("/login").text)

    def attempt(user: str, password: str):
        form = {"username": user, "password": password, "csrf_token": token}
        return client.post("/login", data=form, follow_redirects=False)

    assert [attempt("ann", f"guess-{i}").status_code for i in range(5)] == [400] * 5
    locked = attempt("ann", PASSWORDS["ann"])  # even the right password waits now
    assert locked.status_code == 429 and "Too many failed logins" in locked.text
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60 + 1
    assert attempt("root", PASSWORDS["root"]).status_code == 303  # other accounts are not locked


def test_a_removed_user_is_logged_out_at_once(app, sqlite_store):
    client = login(app, "ann")
    assert client.get("/api/stats").status_code == 200
    assert sqlite_store.delete_user("ann") is True
    assert client.get("/api/stats").status_code == 401


def test_login_redirects_only_to_local_paths(app):
    client = TestClient(app)
    token = _csrf(client.get("/login").text)
    response = client.post(
        "/login",
        data={
            "username": "ann",
            "password": PASSWORDS["ann"],
            "csrf_token": token,
            "next": "//evil.example/x",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/detections"


def test_list_filters_and_pages(app, world):
    client = login(app)
    page = client.get("/detections", params={"device": "dev-1", "species": "sp_wren"})
    expected = {
        d.id for d in world.detections if d.device_id == "dev-1" and d.species_id == "sp_wren"
    }
    assert set(re.findall(r'<tr data-id="([^"]+)"', page.text)) == expected
    assert "Next page" not in page.text
    assert client.get("/detections", params={"score_min": "7"}).status_code == 400
    api = client.get("/api/detections", params={"limit": 7}).json()
    seen = [d["id"] for d in api["detections"]]
    while api["next"]:
        api = client.get("/api/detections", params={"limit": 7, "after": api["next"]}).json()
        seen += [d["id"] for d in api["detections"]]
    assert sorted(seen) == sorted(d.id for d in world.detections)


def test_review_confirm_relabel_history_and_escaping(app, world, sqlite_store):
    client = login(app)
    target, other = world.detections[0], world.detections[1]
    detail = client.get(f"/detections/{target.id}")
    assert f'src="/clips/{target.clip_id}"' in detail.text
    token = _csrf(detail.text)
    hostile = '<script>alert("x")</script> & "quotes"'
    r = client.post(
        f"/detections/{target.id}/review",
        data={"verdict": "confirm", "note": hostile, "csrf_token": token},
    )
    assert r.status_code == 200
    assert "<script>alert" not in r.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#34;quotes&#34;" in r.text
    client.post(
        f"/detections/{other.id}/review",
        data={"verdict": "relabel", "species_id": "sp_nightjar", "csrf_token": token},
    )
    assert "relabelled: Caprimulgus europaeus" in client.get(f"/detections/{other.id}").text
    reviews = sqlite_store.reviews(other.id)
    assert [(r.reviewer, r.verdict, r.species_id) for r in reviews] == [
        ("ann", Verdict.RELABEL, "sp_nightjar")
    ]
    bad = client.post(
        f"/detections/{other.id}/review",
        data={"verdict": "relabel", "species_id": "sp_unicorn", "csrf_token": token},
    )
    assert bad.status_code == 400 and "not in the species list" in bad.text
    assert sqlite_store.detection(other.id).detection == other  # the row never changes


def test_state_changes_need_the_csrf_token_and_same_origin(app, world, sqlite_store):
    client = login(app)
    target = world.detections[2]
    token = _csrf(client.get(f"/detections/{target.id}").text)
    url = f"/detections/{target.id}/review"
    assert client.post(url, data={"verdict": "reject"}).status_code == 403
    assert client.post(url, data={"verdict": "reject", "csrf_token": "guess"}).status_code == 403
    cross = client.post(
        url,
        data={"verdict": "reject", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    api = client.post(f"/api/detections/{target.id}/reviews", json={"verdict": "reject"})
    assert api.status_code == 403
    assert sqlite_store.reviews(target.id) == []
    ok = client.post(
        f"/api/detections/{target.id}/reviews",
        json={"verdict": "reject", "note": "rain"},
        headers={"X-CSRF-Token": token},
    )
    assert ok.status_code == 201 and ok.json()["reviews"][0]["note"] == "rain"


def test_bulk_review_applies_to_the_filtered_selection(app, world, sqlite_store):
    client = login(app)
    token = _csrf(client.get("/detections").text)
    r = client.post(
        "/detections/bulk",
        data={"species": "sp_frog", "verdict": "reject", "note": "all noise", "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    frogs = {d.id for d in world.detections if d.species_id == "sp_frog"}
    rejected = client.get("/api/detections", params={"review": "reject", "limit": 500}).json()
    assert {d["id"] for d in rejected["detections"]} == frogs
    assert f"{len(frogs)} detections reviewed" in client.get(r.headers["location"]).text


def test_species_pages_thresholds_in_the_device_format(app, world, sqlite_store):
    owls = sorted((d for d in world.detections if d.species_id == "sp_owl"), key=lambda d: d.score)
    sqlite_store.add_reviews([d.id for d in owls[:2]], "ann", Verdict.REJECT)
    sqlite_store.add_reviews([d.id for d in owls[2:]], "ann", Verdict.CONFIRM)
    client = login(app)
    listing = client.get("/species").text
    assert "sp_owl" in listing and "25%" in listing  # 2 of 8 reviewed owls were wrong
    page = client.get("/species/sp_owl").text
    assert "<svg" in page and "<rect" in page
    toml = tomllib.loads(client.get("/species/thresholds.toml").text)
    threshold = toml["classify"]["species_thresholds"]["sp_owl"]
    assert threshold == pytest.approx(owls[2].score, abs=1e-4)
    device_config = pytest.importorskip("device.config")
    device_config.ClassifySection.model_validate(toml["classify"])  # the device takes it as is


def test_clip_and_spectrogram_are_served(app, world):
    client = login(app)
    clip_id = world.detections[3].clip_id
    audio = client.get(f"/clips/{clip_id}")
    assert audio.headers["content-type"] == "audio/flac" and audio.content.startswith(b"fLaC")
    part = client.get(f"/clips/{clip_id}", headers={"Range": "bytes=0-3"})
    assert part.status_code == 206 and part.content == b"fLaC"
    png = client.get(f"/clips/{clip_id}/spectrogram.png")
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert client.get("/clips/nope").status_code == 404


def test_a_clip_that_decodes_too_long_is_refused_before_it_is_decoded(app, world, sqlite_store):
    """A clip stored before the bound (or under a looser one): the spectrogram once decoded all
    30 minutes of it (1 GB in the review app); now both routes refuse it from its header."""
    relative = world.clips.relative_path("clip-long", "dev-1", utc_now())
    sha = world.clips.write(relative, silent_flac(30 * 60))
    sqlite_store.ingest(
        IngestUnit(clips=[Clip("clip-long", "dev-1", "site-a", relative, 1, sha, utc_now())])
    )
    client = login(app)
    tracemalloc.start()
    try:
        picture = client.get("/clips/clip-long/spectrogram.png")
        audio = client.get("/clips/clip-long")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert picture.status_code == 422 and "longer than the 120 s limit" in picture.text
    assert audio.status_code == 422 and "cannot play this clip" in audio.text
    assert peak < 32 << 20, f"{peak / 1e6:.0f} MB allocated to refuse it"


def test_fleet_stats_and_admin_only_dead_letters(app, sqlite_store):
    sqlite_store.ingest(
        IngestUnit(
            dead_letters=[DeadLetter(detections_topic("s", "d"), "not_json", "bad", b"<b>x</b>", 8)]
        )
    )
    ann = login(app, "ann")
    fleet = ann.get("/fleet").text
    assert all(f'data-device="dev-{k}"' in fleet for k in range(3))
    assert ann.get("/api/fleet").json()["devices"][0]["state"] == "online"
    assert ann.get("/dead-letters").status_code == 403
    stats = ann.get("/api/stats").json()
    assert stats["detections"] == 30 and stats["dead_letters"] == {"not_json": 1}
    root = login(app, "root")
    letters = root.get("/dead-letters").text
    assert "&lt;b&gt;x&lt;/b&gt;" in letters and "<b>x</b>" not in letters
    assert root.get("/api/dead-letters").json()["counts"] == {"not_json": 1}


def test_security_headers(app):
    response = TestClient(app).get("/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie


@pytest.mark.parametrize(
    "when",
    ["0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00", "2024-13-01T00:00", "10000-01-01"],
)
@pytest.mark.parametrize("field", ["from", "to"])
def test_bad_or_out_of_range_filter_dates_are_a_400_that_names_the_field(app, field, when):
    ann = login(app)
    for path in ("/detections", "/api/detections"):
        response = ann.get(path, params={field: when})
        assert response.status_code == 400, (path, response.text[:300])
        assert field in response.text


def test_a_cursor_out_of_range_is_a_400(app):
    raw = json.dumps(["0001-01-01T00:00:00+01:00", "x"]).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert login(app).get("/api/detections", params={"after": token}).status_code == 400


def test_the_fleet_flags_a_device_whose_clock_ran_ahead(app, sqlite_store):
    now = utc_now()
    ahead = status("dev-9", sent_utc=datetime(2099, 1, 1, tzinfo=timezone.utc))
    sqlite_store.ingest(IngestUnit(statuses=[(ahead, now)]))
    ann = login(app)
    row = next(d for d in ann.get("/api/fleet").json()["devices"] if d["device_id"] == "dev-9")
    assert row["clock_note"].startswith("clock ") and row["clock_note"].endswith("days ahead")
    assert row["status_sent_utc"] == now.isoformat()
    assert "days ahead" in ann.get("/fleet").text


@pytest.mark.parametrize(
    ("trusted", "limited"), [([], True), (["127.0.0.1"], False)], ids=["no-proxy", "proxy"]
)
def test_the_login_throttle_counts_the_tcp_peer_unless_a_proxy_is_configured(
    sqlite_store, world, tmp_path, trusted, limited
):
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default: a client on the host could
    rotate it past the throttle. Only a configured proxy's header is believed now."""
    settings = WebSettings(trusted_proxies=trusted)
    app = create_app(sqlite_store, world.clips, world.catalogue, b"k" * 32, settings, tmp_path)
    with LiveServer(app, uvicorn_options(settings)) as live, httpx.Client(base_url=live.url) as c:
        codes = []
        for n in range(8):
            form = c.get("/login")
            codes.append(
                c.post(
                    "/login",
                    data={"username": "ann", "password": "wrong", "csrf_token": _csrf(form.text)},
                    headers={"X-Forwarded-For": f"203.0.113.{n}"},
                ).status_code
            )
    assert (429 in codes) == limited, codes
    assert codes[:5] == [400] * 5


def _logout(client: TestClient) -> None:
    token = _csrf(client.get("/detections").text)
    assert (
        client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code
        == 303
    )


def _replay(app, cookie: str) -> int:
    """A client that kept an old cookie (copied, stolen, or a second browser tab)."""
    other = TestClient(app)
    other.cookies.set(COOKIE, cookie)
    return other.get("/api/stats").status_code


def test_logout_ends_the_session_on_the_server_not_just_in_the_browser(app):
    client = login(app)
    cookie = client.cookies[COOKIE]
    assert _replay(app, cookie) == 200
    _logout(client)
    assert _replay(app, cookie) == 401


@pytest.mark.parametrize(
    "change",
    [
        lambda store: store.put_user(User("ann", hash_password("a-new-password"), Role.REVIEWER, utc_now())),
        lambda store: store.put_user(User("ann", store.user("ann").password_hash, Role.ADMIN, utc_now())),
        lambda store: store.delete_user("ann"),
        lambda store: (store.delete_user("ann"), store.put_user(User("ann", hash_password(PASSWORDS["ann"]), Role.ADMIN, utc_now()))),
    ],
    ids=["password-reset", "role-change", "removal", "removed-and-added-again"],
)  # fmt: skip
def test_a_reset_role_change_or_removal_ends_every_session_of_that_user(app, sqlite_store, change):
    ann, again = login(app), login(app)
    cookies = [ann.cookies[COOKIE], again.cookies[COOKIE]]
    change(sqlite_store)
    assert [_replay(app, c) for c in cookies] == [401, 401]
    assert ann.get("/detections", follow_redirects=False).status_code == 303  # to the login
