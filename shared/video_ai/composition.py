"""Building blocks the composition roots share (CLI, `serve`, the functions' bootstrap modules).

Each builder imports its heavy dependency (onnxruntime, PyAV, qdrant) only when called, so an entry point that
never embeds or decodes never pays for those imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from video_ai.settings import Settings

if TYPE_CHECKING:
    from video_ai.adapters.aws import AwsClients
    from video_ai.analyzers import AnalyzerSet, MomentStore
    from video_ai.domain.ports import (
        ArtifactStore,
        AudioSource,
        Embedder,
        FrameSource,
        MomentIndex,
        RangedOpener,
        TextEmbedder,
        ThumbnailStore,
        Tracing,
        VectorIndex,
        VideoFetcher,
    )


def build_embedder(settings: Settings) -> Embedder:
    from video_ai.adapters.onnx_embedder import OnnxEmbedder
    from video_ai.model import ensure_model

    return OnnxEmbedder(settings.model, ensure_model(settings.model, settings.data_dir))


def build_analyzers(settings: Settings, embedder: Embedder, index: VectorIndex,
                    tracing: Tracing | None = None, moments: MomentStore | None = None,
                    thumbnails: ThumbnailStore | None = None,
                    artifacts: ArtifactStore | None = None) -> AnalyzerSet:
    """The analyzers jobs may ask for (features), sharing the process's image model and index (and text index)."""
    from video_ai.analyzers import AnalyzerContext, AnalyzerSet
    from video_ai.domain.ports import NullTracing
    from video_ai.model import ocr_model_dir

    ocr = settings.analysis.ocr
    if ocr.precision == "int8" and ocr.model_dir is None:
        ocr = ocr.model_copy(update={"model_dir": ocr_model_dir(settings)})
    return AnalyzerSet(AnalyzerContext(embedder=embedder, index=index, tracing=tracing or NullTracing(),
                                       labels=settings.analysis.labels, ocr=ocr,
                                       speech=settings.analysis.speech,
                                       moments=moments,
                                       thumbnails=thumbnails, artifacts=artifacts))


def build_thumbnails(settings: Settings, clients: AwsClients | None = None) -> ThumbnailStore | None:
    """Files under the data dir on the embedded setup (one machine: the worker writes where the API reads); with a
    Qdrant server (AWS) the uploads bucket under thumbnails/ (a Lambda's disk is its own); else none."""
    if settings.qdrant.backend == "edge":
        from video_ai.adapters.file_thumbnails import FileThumbnails

        return FileThumbnails(settings.data_dir / "thumbnails")
    if clients is None or not settings.aws.uploads_bucket:
        return None
    from video_ai.adapters.s3_store import S3Thumbnails

    return S3Thumbnails(clients, settings.aws.uploads_bucket)


def build_artifacts(settings: Settings, clients: AwsClients | None = None) -> ArtifactStore | None:
    """Where the thumbnails are (build_thumbnails): files under the data dir on the embedded setup, the uploads
    bucket under artifacts/ with a Qdrant server (AWS), else none."""
    if settings.qdrant.backend == "edge":
        from video_ai.adapters.file_artifacts import FileArtifacts

        return FileArtifacts(settings.data_dir / "artifacts")
    if clients is None or not settings.aws.uploads_bucket:
        return None
    from video_ai.adapters.s3_store import S3Artifacts

    return S3Artifacts(clients, settings.aws.uploads_bucket)


def build_text_embedder(settings: Settings) -> TextEmbedder:
    from video_ai.adapters.onnx_text_embedder import OnnxTextEmbedder

    return OnnxTextEmbedder(threads=settings.model.threads)


def build_moment_index(settings: Settings) -> MomentIndex:
    """The text index of moments on the backend the frames use (`qdrant.backend`)."""
    from video_ai.adapters.onnx_text_embedder import INFO

    qdrant = settings.qdrant
    if qdrant.backend == "server":
        from video_ai.adapters.qdrant_server_moments import QdrantServerMoments

        api_key = qdrant.api_key.get_secret_value() if qdrant.api_key is not None else None
        return QdrantServerMoments(qdrant.server_url(), api_key, qdrant.timeout_s, INFO)
    from video_ai.adapters.qdrant_edge_moments import QdrantEdgeMoments

    return QdrantEdgeMoments(settings.data_dir, INFO)


def build_frame_source(settings: Settings) -> FrameSource:
    from video_ai.adapters.frame_source import PyAVFrameSource

    return PyAVFrameSource(settings.sampling, settings.limits)


def build_audio_source() -> AudioSource:
    from video_ai.adapters.audio_source import PyAVAudioSource

    return PyAVAudioSource()


def build_index(settings: Settings) -> VectorIndex:
    from video_ai.adapters.vector_index_factory import build_vector_index

    return build_vector_index(settings)


def build_aws_clients(settings: Settings) -> AwsClients:
    from video_ai.adapters.aws import AwsClients

    return AwsClients(settings.aws.region, endpoint_url=settings.aws.endpoint_url)


def build_fetcher(settings: Settings, *, allow_local_files: bool, clients: AwsClients | None = None) -> VideoFetcher:
    from video_ai.adapters.http_fetch import HttpVideoFetcher
    from video_ai.adapters.s3_store import S3VideoFetcher

    s3 = S3VideoFetcher(clients or build_aws_clients(settings), settings.limits.max_source_bytes)
    return HttpVideoFetcher(settings.network, settings.limits, s3_fetcher=s3, allow_local_files=allow_local_files)


def build_ranged_opener(clients: AwsClients) -> RangedOpener:
    """Ranged reads of S3 sources for the segments of split jobs (each reads its own bytes, not the whole object)."""
    from video_ai.adapters.s3_range_file import S3RangedOpener

    return S3RangedOpener(clients)


def workdir(settings: Settings) -> Path:
    return settings.data_dir / "tmp"


def clean_workdir(path: Path) -> int:
    """Remove job directories left by a process that was killed mid-job (a Lambda timeout keeps /tmp for the next
    invocation in the same container). Call once per process, before its first job; returns how many went."""
    import shutil

    removed = 0
    if path.is_dir():
        for stale in path.glob("job-*"):
            shutil.rmtree(stale, ignore_errors=True)
            removed += 1
    return removed
