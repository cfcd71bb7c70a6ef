"""The lazy pydantic.v1 check: no import while nothing uses pydantic.v1, FastAPI's own refusal once something does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_routes_and_responses_do_not_import_pydantic_v1() -> None:
    out = _run("""
        import sys
        import pydantic
        from fastapi import FastAPI
        from fastapi.testclient import TestClient
        from video_ai.api.fastapi_compat import skip_unused_pydantic_v1_check

        assert skip_unused_pydantic_v1_check() >= 2
        assert skip_unused_pydantic_v1_check() >= 2  # idempotent: wraps once
        class Body(pydantic.BaseModel):
            name: str
        app = FastAPI()
        @app.post("/things", status_code=201)
        def make(body: Body) -> Body:
            return body
        @app.get("/plain")
        def plain() -> dict[str, list[int]]:
            return {"a": [1, 2]}
        client = TestClient(app)
        assert client.post("/things", json={"name": "x"}).json() == {"name": "x"}
        assert client.get("/plain").json() == {"a": [1, 2]}
        assert client.get("/openapi.json").status_code == 200
        print("pydantic.v1" in sys.modules)
    """)
    assert out == "False"


def test_without_the_shim_fastapi_imports_pydantic_v1() -> None:
    """The reason for the shim, so the test above fails if FastAPI stops doing this (then the shim can go)."""
    out = _run("""
        import sys
        import pydantic
        from fastapi import FastAPI
        class Body(pydantic.BaseModel):
            name: str
        app = FastAPI()
        @app.post("/things")
        def make(body: Body) -> Body:
            return body
        print("pydantic.v1" in sys.modules)
    """)
    assert out == "True"


def test_a_pydantic_v1_model_is_still_refused() -> None:
    out = _run("""
        import warnings
        from fastapi import FastAPI
        from video_ai.api.fastapi_compat import skip_unused_pydantic_v1_check
        skip_unused_pydantic_v1_check()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pydantic import v1
        class Old(v1.BaseModel):
            name: str
        app = FastAPI()
        try:
            @app.post("/old")
            def old(body: Old) -> Old:
                return body
        except Exception as err:
            print(type(err).__name__)
        else:
            print("accepted")
    """)
    assert out != "accepted"


def test_lazy_check_defers_once_pydantic_v1_is_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    from video_ai.api import fastapi_compat

    calls: list[object] = []

    def original(obj: object) -> bool:
        calls.append(obj)
        return True

    check = fastapi_compat._lazy(original)
    monkeypatch.delitem(sys.modules, "pydantic.v1", raising=False)
    assert check(int) is False and calls == []
    monkeypatch.setitem(sys.modules, "pydantic.v1", object())  # type: ignore[arg-type]
    assert check(int) is True and calls == [int]
