"""Text search over moments on the embedded engine: latency at 100,000 moments and recall@10 of the fused list.

    python benchmarks/bench_text_search.py [--moments 100000] [--distinct 20000] [--tenants 5] [--queries 200]

Moments are label moments as the labels analyzer writes them (video_ai.model.wordnet texts), made distinct by
pairing a class with a second class's name half the time: `--distinct` texts are embedded once with the real
sentence model (all-MiniLM-L6-v2 int8) and each is written once per tenant (`--moments` / `--distinct` tenants),
so inside a tenant no two moments share a text. Queries are single words and short phrases (class names, WordNet
categories such as "cat", "vehicle", "food"). Each query searches one tenant's moments (the API always filters by
tenant) with QdrantEdgeMoments.search: dense (cosine >= MIN_SIMILARITY) and BM25 prefetches of 50, fused by RRF
(k=60). Latency: the whole search call (query embedding excluded, measured separately), p50/p95 over the queries.
Recall@10: the fused top 10 against the same fusion computed exactly in numpy over that tenant's moments (exact
cosine; BM25 from the same qdrant-edge Bm25 document vectors with the IDF Qdrant applies,
ln(1 + (N - n + 0.5) / (n + 0.5)) over the whole shard; RRF 1 / (k + rank), rank from 1).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moments", type=int, default=100_000)
    parser.add_argument("--distinct", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    from qdrant_edge import Bm25, Bm25Config

    from video_ai.adapters.onnx_text_embedder import INFO, OnnxTextEmbedder
    from video_ai.adapters.qdrant_edge_moments import MIN_SIMILARITY, RRF_K, QdrantEdgeMoments
    from video_ai.domain.models import Moment, MomentFilter
    from video_ai.model.wordnet import class_words

    rng = random.Random(15)
    tenants = max(1, args.moments // args.distinct)
    texts = []
    seen: set[str] = set()
    while len(texts) < args.distinct:
        text = class_words(rng.randrange(1000)).text()
        if rng.random() < 0.5:
            text += "; " + class_words(rng.randrange(1000)).name
        if text not in seen:
            seen.add(text)
            texts.append(text)
    embedder = OnnxTextEmbedder()
    t0 = time.perf_counter()
    vectors = embedder.embed(texts)
    print(f"embedded {len(texts)} moment texts in {time.perf_counter() - t0:.1f} s", flush=True)

    words = sorted({w for c in range(1000) for w in [class_words(c).name, *class_words(c).categories()]})
    queries = rng.sample(words, args.queries // 2) + [f"a {w}" for w in rng.sample(words, args.queries // 2)]
    t0 = time.perf_counter()
    query_vectors = np.stack([embedder.embed([q])[0] for q in queries])
    print(f"query embedding: {1000 * (time.perf_counter() - t0) / len(queries):.1f} ms per query (uncached)")

    bm25 = Bm25(Bm25Config(language="english", avg_len=32.0))
    docs = [bm25.embed_document(t) for t in texts]
    with tempfile.TemporaryDirectory() as tmp:
        index = QdrantEdgeMoments(Path(tmp), INFO)
        t0 = time.perf_counter()
        for tenant in range(tenants):
            moments = [Moment(job_id=f"job-{tenant}-{i // 50}", tenant=f"t{tenant}", kind="label", text=text,
                              start_s=float(i % 50) * 5, end_s=float(i % 50) * 5 + 5, shot=i % 50, confidence=0.5)
                       for i, text in enumerate(texts)]
            index.upsert(moments, vectors)
        total = tenants * len(texts)
        print(f"upserted {total} moments in {time.perf_counter() - t0:.1f} s ({tenants} tenants)", flush=True)

        # Exact fusion over one tenant's moments (all tenants hold the same texts, so IDF counts every copy).
        df: dict[int, int] = defaultdict(int)
        for doc in docs:
            for term in doc.indices:
                df[term] += 1
        n_docs = total

        def idf(term: int) -> float:
            n = df.get(term, 0) * tenants
            return math.log(1 + (n_docs - n + 0.5) / (n + 0.5))

        by_text = {t: i for i, t in enumerate(texts)}

        def exact(query: str, qv: np.ndarray, depth: int, limit: int) -> tuple[list[str], float, float]:
            """The exact fused top `limit`, and the tie-aware recall@10 of the engine's dense and keyword sides (a
            hit counts when its exact score reaches the exact 10th score: BM25 ties are common)."""
            cos = vectors @ qv
            dense = [i for i in np.argsort(-cos)[:depth] if cos[i] >= MIN_SIMILARITY]
            terms = set(bm25.embed_query(query).indices)
            scores: dict[int, float] = {}
            for i, doc in enumerate(docs):
                s = sum(idf(t) * v for t, v in zip(doc.indices, doc.values, strict=True) if t in terms)
                if s > 0:
                    scores[i] = s
            sparse = sorted(scores, key=lambda i: -scores[i])[:depth]
            fused: dict[int, float] = defaultdict(float)
            for ranking in (dense, sparse):
                for rank, i in enumerate(ranking, start=1):
                    fused[i] += 1 / (RRF_K + rank)
            flt = MomentFilter(tenant="t0")
            engine_dense = index.search_side(query, qv, limit, flt, "dense")
            engine_sparse = index.search_side(query, qv, limit, flt, "keywords")

            def tie_aware(found: list[str], exact_scores: dict[int, float], ranked: list[int]) -> float:
                if not ranked:
                    return 1.0
                floor = exact_scores[ranked[min(limit, len(ranked)) - 1]] - 1e-6
                return sum(exact_scores.get(by_text[t], -1.0) >= floor for t in found) / min(limit, len(ranked))

            dense_scores = {i: float(cos[i]) for i in dense}
            return ([texts[i] for i in sorted(fused, key=lambda i: -fused[i])[:limit]],
                    tie_aware(engine_dense, dense_scores, dense), tie_aware(engine_sparse, scores, sparse))

        latencies = []
        recalls = []
        sides: list[tuple[float, float]] = []
        empty = 0
        for q, qv in zip(queries, query_vectors, strict=True):
            tenant = f"t{rng.randrange(tenants)}"
            t0 = time.perf_counter()
            hits = index.search(q, qv, 10, MomentFilter(tenant=tenant))
            latencies.append(time.perf_counter() - t0)
            truth, dense_recall, sparse_recall = exact(q, qv, 50, 10)
            sides.append((dense_recall, sparse_recall))
            if not truth:
                empty += not hits
                continue
            recalls.append(len({h.text for h in hits} & set(truth)) / len(truth))
        ms = np.asarray(latencies) * 1000
        print(f"{len(queries)} queries over {total} moments ({total // tenants} per tenant): "
              f"p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms, max {ms.max():.1f} ms")
        print(f"recall@10 of the fused list vs exact: mean {np.mean(recalls):.3f}, min {np.min(recalls):.2f} "
              f"({len(recalls)} queries with an exact answer; {empty} without one also answered nothing)")
        dense_r, sparse_r = np.mean([a for a, _ in sides]), np.mean([b for _, b in sides])
        print(f"each side alone vs exact, tie-aware recall@10 (tenant t0): dense {dense_r:.3f}, "
              f"keywords {sparse_r:.3f}")
        index.close()


if __name__ == "__main__":
    main()
