"""Segments of a split job: ranged S3 reads vs downloading the whole object, per segment, in one run (issue 8 item 4).

    .venv/bin/python benchmarks/bench_ranged.py [--minutes 10] [--segment-s 60] [--clip PATH] [--quick]

Builds a long H.264 MP4 by remuxing a clip end to end (bench_long.make_long: no re-encode; its index is at the end of
the file, the harder case for ranged reads), puts it on moto's S3 server (loopback), then for each time segment:
  whole   - what a segment did before: S3VideoFetcher (HEAD, GET pinned to the ETag, sha256 to a temp file), then the
            segment's decode pass over the local file
  ranged  - what a segment does now: the same decode pass over S3RangeFile (aligned blocks, runs doubling while reading
            in order, the next run read ahead on a background thread, every GET pinned to the ETag)
  --no-read-ahead adds the ranged pass with read_ahead=False, in the same rounds
Decode pass = the frame source's reader over [start, end) in fps mode at 1 fps with shot detection (no embedding,
which is the same in both). Prints bytes read as a share of the object, GETs, time waiting on GETs and wall time for
both, and checks the two passes give the same frames. moto's GET cost grows with the object's size (a 1-byte ranged
GET of a 119 MB object is ~0.1 s there), so its wall times are pessimistic for the ranged side.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

from bench_long import DEFAULT_CLIP, make_long  # run as `python benchmarks/bench_ranged.py`: benchmarks/ is on sys.path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--segment-s", type=float, default=60.0)
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--quick", action="store_true", help="a 3-minute file, 60 s segments (< 60 s)")
    parser.add_argument("--no-read-ahead", action="store_true",
                        help="also time each segment's ranged pass with S3RangeFile(read_ahead=False)")
    args = parser.parse_args()

    import av
    import boto3
    from moto.server import ThreadedMotoServer

    from video_ai.adapters.aws import AwsClients
    from video_ai.adapters.frame_source import PyAVFrameSource
    from video_ai.adapters.s3_range_file import S3RangeFile
    from video_ai.adapters.s3_store import S3VideoFetcher
    from video_ai.domain.models import S3Location, Sampling, Source
    from video_ai.samples import make_clip
    from video_ai.services.analyze_video import segment_bounds

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    minutes = 3.0 if args.quick else args.minutes
    work = Path(tempfile.mkdtemp(prefix="bench-ranged-"))
    clip = args.clip
    if not clip.exists():
        clip = make_clip(work / "clip.mp4", duration_s=30.0, fps=30.0, size=(1280, 720), shots=[5.0, 10.0, 20.0],
                         gop=150)
    video = make_long(clip, work / "long.mp4", minutes)
    size = video.stat().st_size
    with av.open(str(video)) as probe:
        stream = probe.streams.video[0]
        assert stream.duration is not None and stream.time_base is not None
        duration_s = float(stream.duration * stream.time_base)

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        session = boto3.session.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                                        region_name="us-east-1")
        clients = AwsClients("us-east-1", endpoint_url=f"http://{host}:{port}", session=session)
        clients.s3.create_bucket(Bucket="bench-bucket")
        etag = clients.s3.put_object(Bucket="bench-bucket", Key="long.mp4", Body=video.read_bytes())["ETag"]
        location = S3Location(bucket="bench-bucket", key="long.mp4")
        fetcher = S3VideoFetcher(clients, max_bytes=2**31)
        frames = PyAVFrameSource()
        sampling = Sampling(mode="fps", fps=1.0)
        bounds = segment_bounds(duration_s, args.segment_s)
        print(f"{video.name}: {size / 1e6:.1f} MB, {duration_s:.0f} s, {len(bounds)} segments of {args.segment_s:g} s "
              f"on moto's S3 server (loopback)")
        print(f"{'segment':>7} {'read share':>10} {'GETs':>5} {'GET wait s':>10} {'ranged s':>9} "
              f"{'whole: fetch s':>14} {'decode s':>9} {'total s':>8} {'whole/ranged':>12}")
        totals = {"ranged": 0.0, "whole": 0.0, "bytes": 0, "plain": 0.0, "plain_wait": 0.0, "wait": 0.0}
        for i, (start, end) in enumerate(bounds):
            t0 = time.perf_counter()
            ranged_file = S3RangeFile(clients.s3, location, etag)
            reader = frames.open(ranged_file, sampling, image_size=(224, 224), start_s=start or None, end_s=end)
            ranged = [(f.frame_number, f.pts_s, f.shot) for f in reader]
            reader.close()
            ranged_s = time.perf_counter() - t0

            if args.no_read_ahead:
                t0 = time.perf_counter()
                plain_file = S3RangeFile(clients.s3, location, etag, read_ahead=False)
                reader = frames.open(plain_file, sampling, image_size=(224, 224), start_s=start or None, end_s=end)
                plain = [(f.frame_number, f.pts_s, f.shot) for f in reader]
                reader.close()
                totals["plain"] += time.perf_counter() - t0
                totals["plain_wait"] += plain_file.fetch_seconds
                if plain != ranged:
                    print(f"segment {i}: frames differ without read-ahead", file=sys.stderr)
                    return 1

            t0 = time.perf_counter()
            fetched = fetcher.fetch(Source(s3=location), work / f"segment-{i}")
            fetch_s = time.perf_counter() - t0
            reader = frames.open(fetched.path, sampling, image_size=(224, 224), start_s=start or None, end_s=end)
            whole = [(f.frame_number, f.pts_s, f.shot) for f in reader]
            reader.close()
            whole_s = time.perf_counter() - t0
            fetched.path.unlink()
            if ranged != whole:
                print(f"segment {i}: ranged frames differ from the local file's", file=sys.stderr)
                return 1
            totals["ranged"] += ranged_s
            totals["whole"] += whole_s
            totals["bytes"] += ranged_file.bytes_fetched
            totals["wait"] += ranged_file.fetch_seconds
            print(f"{i:>7} {ranged_file.bytes_fetched / size:>10.3f} {ranged_file.requests:>5} "
                  f"{ranged_file.fetch_seconds:>10.2f} {ranged_s:>9.2f} {fetch_s:>14.2f} {whole_s - fetch_s:>9.2f} "
                  f"{whole_s:>8.2f} {whole_s / ranged_s:>12.2f}")
        print(f"all segments: bytes read {totals['bytes'] / size:.2f}x the object by ranges vs {len(bounds)}x by whole "
              f"downloads; wall {totals['ranged']:.1f} s ranged vs {totals['whole']:.1f} s whole "
              f"({totals['whole'] / totals['ranged']:.2f}x); same frames in every segment")
        if args.no_read_ahead:
            print(f"without read-ahead, same segments: wall {totals['plain']:.1f} s, GET wait "
                  f"{totals['plain_wait']:.2f} s (with read-ahead: {totals['ranged']:.1f} s, GET wait "
                  f"{totals['wait']:.2f} s)")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
