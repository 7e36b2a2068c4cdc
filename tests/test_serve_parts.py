"""The pure parts of `serve`: when notifications are due, the webhook's verdicts, the
`[[notify]]` settings, the debounced wake-up of the loop, message formats."""

from __future__ import annotations

import json
import threading
import time
import tomllib
from pathlib import Path

import pytest

from reconciler.adapters.notify import payload
from reconciler.core.loop.notify import (
    Event,
    Format,
    NotifyError,
    Observation,
    mask_url,
    parse_targets,
    transitions,
)
from reconciler.serve.http import ListenError, parse_listen
from reconciler.serve.status import environment_state
from reconciler.serve.webhook import MAX_BODY, judge, signature, signature_ok
from reconciler.settings import SettingsError, load_settings
from reconciler.watch.control import Stopper, Wakeup

OK = Observation(ok=True)


def events(before: Observation | None, now: Observation) -> list[str]:
    return [n.event.value for n in transitions(before, now)]


def test_transitions_fire_once_per_change_of_state() -> None:
    drift = Observation(ok=True, drifted={"a": ("out_of_band",)})
    failing = Observation(ok=False, error="boom", drifted={"a": ("out_of_band",)})
    assert events(None, OK) == []
    assert events(OK, OK) == []
    assert events(OK, drift) == ["drift"]
    assert events(drift, drift) == []  # steady drift: nothing
    assert events(drift, Observation(ok=True, drifted={"a": (), "b": ()})) == []
    assert events(drift, failing) == ["failure"]
    assert events(failing, failing) == []
    assert events(failing, drift) == ["recovery"]
    assert events(drift, OK) == []
    assert events(OK, Observation(ok=True, applied=("a:2 new_version",))) == ["applied"]
    assert events(None, drift) == ["drift"]  # a service that starts on drift says so once


def test_drift_message_names_environments_and_classes() -> None:
    now = Observation(ok=True, drifted={"b": ("missing",), "a": ("out_of_band", "build")}, cycle=4)
    (note,) = transitions(OK, now, "https://ci.example.invalid/report")
    assert note.environments == ("a", "b")
    assert note.classes == ("build", "missing", "out_of_band")
    assert note.details == ("a: out_of_band, build", "b: missing")
    for fmt in Format:
        body = json.dumps(payload(note, fmt))
        assert "drift in 2 environments" in body
        assert "https://ci.example.invalid/report" in body


def test_notify_settings_are_checked_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / "reconciler.toml").write_text(
        '[[notify]]\nurl = "https://hooks.example.invalid/T/abc"\nformat = "slack"\n'
        'on = ["drift", "applied"]\n'
    )
    settings = load_settings(tmp_path, {}, environ={})
    (target,) = settings.notify
    assert target.format is Format.SLACK and target.on == {Event.DRIFT, Event.APPLIED}
    assert target.masked == "https://hooks.example.invalid/***"
    (tmp_path / "reconciler.toml").write_text('[[notify]]\nurl = "x"\nformat = "email"\n')
    with pytest.raises(SettingsError, match=r"reconciler.toml: \[\[notify\]\] #1: `url`"):
        load_settings(tmp_path, {}, environ={})
    for entry, message in [
        ('url = "https://h/x"\nformat = "email"', "`format` 'email' is not one of"),
        ('url = "https://h/x"\non = ["sometimes"]', "unknown event 'sometimes'"),
        ('url = "https://h/x"\ntoken = "t"', "unknown key `token`"),
        ('url = "https://h/x"\non = []', "non-empty list"),
    ]:
        with pytest.raises(NotifyError, match=message):
            parse_targets([tomllib.loads(entry)])
    assert mask_url("http://127.0.0.1:9/") == "http://127.0.0.1:9"
    assert mask_url("https://u:p@h.example/x?sig=1") == "https://h.example/***"


def test_webhook_verdicts() -> None:
    secret, body = b"s3cret", json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()
    good = signature(secret, body)
    assert signature_ok(secret, body, good)
    assert not signature_ok(secret, body + b" ", good)
    assert not signature_ok(b"", body, signature(b"", body))  # no secret: nothing passes
    assert judge(secret, "push", None, body, "main").status == 401
    assert judge(secret, "push", "sha256=00", body, "main").status == 401
    assert judge(secret, "push", good.upper(), body, "main").status == 401
    accepted = judge(secret, "push", good, body, "main")
    assert (accepted.status, accepted.trigger) == (202, "push aaaaaaaaaaaa")
    assert judge(secret, "push", good, body, "release").result == "ignored"
    ping = b'{"zen": "x"}'
    assert judge(secret, "ping", signature(secret, ping), ping, "main").status == 200
    junk = b"not json"
    assert judge(secret, "push", signature(secret, junk), junk, "main").status == 400
    form = b"payload=" + body.replace(b" ", b"+")
    assert judge(secret, "push", signature(secret, form), form, "main").result == "accepted"
    assert MAX_BODY == 25 * 1024 * 1024


def test_wakeup_debounces_and_stops() -> None:
    stopper = Stopper()
    wakeup = Wakeup(stopper, debounce=0.05, max_wait=1.0)
    assert wakeup.wait(0.01) is None  # timer ran out
    for i in range(3):
        wakeup.request(f"push {i}")
    assert wakeup.wait(1) == "push 0 +2 more"

    def later() -> None:
        time.sleep(0.02)
        wakeup.request("push x")
        time.sleep(0.02)
        wakeup.request("push x")

    threading.Thread(target=later).start()
    start = time.monotonic()
    assert wakeup.wait(5) == "push x"
    assert time.monotonic() - start < 1.0
    threading.Timer(0.05, stopper.stop).start()
    start = time.monotonic()
    assert wakeup.wait(30) is None and stopper.stopped
    assert time.monotonic() - start < 5


def test_listen_addresses_and_states() -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("8080x", "host", "h:99999"):
        with pytest.raises(ListenError):
            parse_listen(bad)
    assert environment_state({"status": "drift", "classes": ["pending"]}) == "pending"
    assert environment_state({"status": "drift", "classes": ["pending", "build"]}) == "drift"
    assert environment_state({"status": "unmanaged", "classes": ["unmanaged"]}) == "unmanaged"
