"""`video-ai` argument handling: usage mistakes exit 2 with the usage line; every option says what it does."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from video_ai.cli import EXIT_CODES, build_parser, main


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["analyze"], "give a SOURCE"),
        (["analyze", "clip.mp4", "--sample"], "not both"),
        (["analyze", "clip.mp4", "--fps", "0"], "--fps"),
        (["analyze", "clip.mp4", "--fps", "nan"], "--fps"),
        (["analyze", "clip.mp4", "--max-frames", "-3"], "--max-frames"),
        (["search", "--frame", "nonsense"], "JOB_ID:INDEX"),
        (["search", "--frame", "abc:-1"], "JOB_ID:INDEX"),
        (["search", "--frame", "abc:18446744073709551616"], "at most 1000000"),
        (["search", "--frame", "abc:1", "--top-k", "0"], "--top-k"),
        (["search", "--frame", "abc:1", "--start-s", "5", "--end-s", "2"], "before --start-s"),
        (["search"], "give one of --image, --frame or --text"),
        (["search", "--text", "cat", "--frame", "abc:1"], "--text combines with --image, not with --frame"),
        (["search", "--image", "a.png", "--frame", "abc:1"], "not allowed with argument"),
        (["serve", "--workers", "40"], "--workers"),
        (["serve", "--port", "70000"], "--port"),
    ],
)
def test_usage_mistakes_exit_2_with_the_usage_line_and_one_error(argv: list[str], says: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == EXIT_CODES["usage"] == 2
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.strip().splitlines()
    assert lines[0].startswith(f"usage: video-ai {argv[0]}")
    errors = [line for line in lines if line.startswith("video-ai: error:")]
    assert len(errors) == 1 and says in errors[0], err
    assert "internal_error" not in err and "Traceback" not in err


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.append(sub)
                found.extend(_subparsers(sub))
    return found


def test_every_option_has_a_description_and_says_its_default() -> None:
    missing = []
    for sub in _subparsers(build_parser()):
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            name = f"{sub.prog} {'/'.join(action.option_strings) or action.dest}"
            if not action.help:
                missing.append(f"{name}: no description")
            elif action.default not in (None, False) and f"default: {action.default}" not in action.help:
                missing.append(f"{name}: its default {action.default!r} is not named")
    assert missing == []


def test_every_exit_code_is_in_the_readme_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    table = {line.split("|")[1].strip(" `"): line.split("|")[2].strip() for line in readme.splitlines()
             if line.startswith("| `") and line.count("|") >= 4}
    for code, exit_code in EXIT_CODES.items():
        assert table.get(code) == str(exit_code), f"{code} (exit {exit_code}) missing from the README's table"
    for other in ("internal_error", "interrupted"):
        assert other in table, f"{other} missing from the README's table"


def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import video_ai.cli as cli

    def broken(args: argparse.Namespace) -> int:
        raise PermissionError(13, "Permission denied", str(tmp_path / "sheet.png"))

    monkeypatch.setattr(cli, "cmd_config_schema", broken)
    monkeypatch.delenv("VIDEO_AI_DEBUG", raising=False)
    assert main(["config", "schema"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("video-ai: error: internal_error: PermissionError: [Errno 13] Permission denied")
    monkeypatch.setenv("VIDEO_AI_DEBUG", "1")
    assert main(["config", "schema"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_bad_config_with_json_prints_the_failure_shape_too(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["analyze", "clip.mp4", "--json", "--config", str(tmp_path / "missing.yml")]) == 2
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["job_id"] is None and record["status"] == "failed" and record["error"]["code"] == "invalid_config"
    assert err.count("video-ai: error:") == 1 and "missing.yml" in err


@pytest.mark.parametrize(
    ("argv", "exit_code", "says"),
    [
        (["analyze", "ftp://host/v.mp4"], 12, "ftp:// is not supported"),
        (["analyze", "http://"], 12, "http://: the URL has no host"),
        (["analyze", "s3://bucket"], 12, "s3://bucket: "),
        (["analyze", "{tmp}", "--json"], 4, "is a directory, not a video file"),
        (["analyze", "{tmp}/clip.mp4", "--contact-sheet", "{tmp}/no/such/dir/sheet.png"], 12,
         "is not a writable directory"),
        (["search", "--image", "{tmp}"], 12, "is a directory, not an image"),
        (["config", "check", "{tmp}/binary.yml"], 2, "not a YAML text file"),
    ],
)
def test_a_bad_argument_is_one_line_before_any_work(argv: list[str], exit_code: int, says: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIDEO_AI__DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 16)
    (tmp_path / "binary.yml").write_bytes(b"data_dir: \xe8\xff\n")
    assert main([arg.replace("{tmp}", str(tmp_path)) for arg in argv]) == exit_code
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("video-ai: error:")]
    assert len(errors) == 1 and says in errors[0] and "internal_error" not in err, err
    assert not (tmp_path / "data" / "jobs").exists()  # no job record was made
