"""Turn a BEIR data set into search sessions through the API, as real users would produce them.

For each query the current model's top-k items are "shown" and a position-biased click model
draws clicks from the qrels. The search itself runs here, in the client process, with the same
model the server holds; only the resulting sessions and clicks travel over the API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embtune.client import Client
from embtune.demo.beir import load_corpus, load_qrels, load_queries
from embtune.demo.click_model import PositionBiasedClickModel


@dataclass
class SimulationReport:
    queries: int = 0
    sessions: int = 0
    clicks: int = 0
    irrelevant: int = 0
    sessions_with_clicks: int = 0


def top_k(
    model_source: str,
    queries: dict[str, str],
    corpus: dict[str, str],
    k: int,
    max_seq_length: int,
    on_progress: Callable[[str], None] | None = None,
) -> dict[str, list[str]]:
    """Exact cosine top-k of every query over the corpus with the given model."""
    import torch

    from embtune.training.models import load_model

    model = load_model(model_source, max_seq_length)
    ids = list(corpus)
    if on_progress:
        on_progress(f"encoding {len(ids)} items")
    docs = model.encode([corpus[i] for i in ids], batch_size=64, convert_to_tensor=True,
                        normalize_embeddings=True)
    qids = list(queries)
    if on_progress:
        on_progress(f"encoding {len(qids)} queries")
    q = model.encode([queries[i] for i in qids], batch_size=64, convert_to_tensor=True,
                     normalize_embeddings=True)
    result: dict[str, list[str]] = {}
    for start in range(0, len(qids), 256):
        scores = q[start : start + 256] @ docs.T
        top = torch.topk(scores, k=min(k, len(ids)), dim=1).indices.tolist()
        for offset, row in enumerate(top):
            result[qids[start + offset]] = [ids[j] for j in row]
    return result


def simulate_beir(
    client: Client,
    beir_dir: Path,
    *,
    split: str,
    model_source: str,
    click_model: PositionBiasedClickModel,
    sessions_per_query: int = 3,
    k: int = 10,
    max_seq_length: int = 256,
    limit: int | None = None,
    prefix: str = "sim",
    on_progress: Callable[[str], None] | None = None,
    on_session: Callable[[], None] | None = None,
) -> SimulationReport:
    qrels = load_qrels(beir_dir, split)
    queries = {qid: text for qid, text in load_queries(beir_dir).items() if qid in qrels}
    if limit is not None:
        queries = dict(list(sorted(queries.items()))[:limit])
    shown = top_k(model_source, queries, load_corpus(beir_dir), k, max_seq_length, on_progress)
    report = SimulationReport(queries=len(queries))
    for qid, text in queries.items():
        for n in range(sessions_per_query):
            session_id = f"{prefix}-{split}-{qid}-{n}"
            outcome = click_model.simulate(session_id, shown[qid], qrels[qid])
            client.post_session(session_id, text, shown[qid])
            if outcome.clicks:
                client.push_events(
                    session_id,
                    [{"event_id": f"{session_id}-c{i}", "object_id": oid}
                     for i, oid in enumerate(outcome.clicks)],
                )
                report.sessions_with_clicks += 1
            if outcome.irrelevant:
                client.mark_irrelevant(session_id)
                report.irrelevant += 1
            report.sessions += 1
            report.clicks += len(outcome.clicks)
            if on_session:
                on_session()
    return report
