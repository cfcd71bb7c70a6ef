"""FileArtifacts: one file per job and name under its root; ids and names that are not plain never reach the disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from video_ai.adapters.file_artifacts import FileArtifacts


def test_put_get_copy_delete(tmp_path: Path) -> None:
    store = FileArtifacts(tmp_path / "artifacts")
    store.put("job-a", "transcript.json", b'{"segments": []}')
    store.put("job-a", "text.json", b'{"items": []}')
    store.put("job-a", "text.json", b'{"items": [1]}')  # a re-run replaces
    assert store.get("job-a", "text.json") == b'{"items": [1]}'
    assert store.get("job-a", "other.json") is None and store.get("job-b", "text.json") is None
    assert store.copy("job-a", "job-b") == 2
    assert store.get("job-b", "transcript.json") == b'{"segments": []}'
    store.delete("job-a")
    assert store.get("job-a", "text.json") is None and store.get("job-b", "text.json") == b'{"items": [1]}'
    assert store.copy("job-a", "job-c") == 0
    assert not list((tmp_path / "artifacts").rglob("*.part"))


@pytest.mark.parametrize(("job_id", "name"), [("..", "a.json"), ("a/b", "a.json"), ("", "a.json"),
                                              ("a" * 129, "a.json"), ("job", "../x.json"), ("job", ".hidden"),
                                              ("job", "a/b.json"), ("job", ""), ("job", "a..json"),
                                              ("job", "x" * 129), ("job\x00", "a.json")])
def test_ids_and_names_that_are_not_plain_are_refused(tmp_path: Path, job_id: str, name: str) -> None:
    store = FileArtifacts(tmp_path / "artifacts")
    with pytest.raises(ValueError, match="not a job id and artifact name"):
        store.put(job_id, name, b"x")
    assert store.get(job_id, name) is None
    store.delete(job_id)
    assert not (tmp_path / "artifacts").exists()


def test_the_embedded_setup_keeps_them_under_the_data_dir_and_aws_in_the_uploads_bucket(tmp_path: Path) -> None:
    from video_ai.adapters.s3_store import S3Artifacts
    from video_ai.composition import build_artifacts
    from video_ai.settings import Settings

    local = build_artifacts(Settings(data_dir=tmp_path))
    assert isinstance(local, FileArtifacts) and local.root == tmp_path / "artifacts"
    server = Settings(data_dir=tmp_path, qdrant={"backend": "server", "url": "http://127.0.0.1:6333"},
                      aws={"uploads_bucket": "uploads"})
    assert build_artifacts(server) is None  # no clients: nowhere to keep them
    deployed = build_artifacts(server, clients=object())  # type: ignore[arg-type]
    assert isinstance(deployed, S3Artifacts) and deployed.bucket == "uploads" and deployed.prefix == "artifacts/"
