"""Cross-request batching on the tiny random-weight F5 model (every layer random, so the transformer,
its attention and the batch padding all shape the output): our batched sampler against f5_tts's own
`CFM.sample`, batched items against the same items alone, and the Batcher's scheduling."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from f5_tts.model.utils import convert_char_to_pinyin

from tts_worker import audio, tts
from tts_worker.batching import Batcher
from tts_worker.errors import ModelError
from tts_worker.voices import default_voice

PARAMS = tts.SamplingParams(nfe_steps=4)
TEXTS = [
    "A short one.",
    "A second sentence, a good deal longer than the first, so the batch needs padding.",
    "And a third of middling length.",
]
ROUNDING = 1e-5  # float32 on CPU: the same arithmetic in another batch shape differs in the last bits


@pytest.fixture(scope="module")
def engine(worker) -> tts.F5Engine:
    return worker.engine


@pytest.fixture(scope="module")
def refs(engine) -> list[tts.Reference]:
    """The default voice, and its first 3 s with a shorter text: two prompts of different lengths."""
    data, text = default_voice()
    samples, rate = audio.decode(data, field="voice")
    samples = audio.resample(samples, rate, tts.SAMPLE_RATE)
    return [
        engine.prepare_reference(samples, text, max_seconds=12),
        engine.prepare_reference(samples[: 3 * tts.SAMPLE_RATE], "Some call me nature.", max_seconds=12),
    ]


def gens(refs: list[tts.Reference], seed: int = 10) -> list[tts.Generation]:
    return [tts.Generation(refs[i % 2], text, PARAMS, seed + i) for i, text in enumerate(TEXTS)]


def test_our_sampler_is_f5s_sample_at_batch_size_one(engine, refs):
    ref, text = refs[0], TEXTS[1]
    tokens = convert_char_to_pinyin([ref.text + text])
    with torch.inference_mode():
        ours, lengths = engine._sample([tts.Generation(ref, text, PARAMS, 7)], tokens, [700])
        upstream, _ = engine._model.sample(
            cond=ref.audio, text=tokens, duration=700, steps=PARAMS.nfe_steps, cfg_strength=PARAMS.cfg_strength,
            sway_sampling_coef=PARAMS.sway_sampling_coef, seed=7,
        )  # fmt: skip
    assert lengths == [700]
    assert torch.equal(ours, upstream)


def test_each_batched_item_is_what_it_gives_alone(engine, refs):
    batch = engine.generate_batch(gens(refs))
    alone = [engine.generate(g.ref, g.text, g.params, g.seed) for g in gens(refs)]
    assert [b.batch_size for b in batch] == [3, 3, 3] and all(a.batch_size == 1 for a in alone)
    for b, a in zip(batch, alone, strict=True):
        assert b.wave.shape == a.wave.shape  # each item cut at its own length, not the batch's
        assert np.abs(b.wave - a.wave).max() < ROUNDING
        assert np.abs(a.wave).max() > 0.01
    # The prompt and text matter: a batch of one item differs from its neighbour of the same length.
    assert np.abs(batch[1].wave[: len(batch[2].wave)] - batch[2].wave).max() > 0.01


def test_items_keep_their_own_seed(engine, refs):
    same_text = [tts.Generation(refs[0], TEXTS[0], PARAMS, seed) for seed in (1, 2)]
    one, two = engine.generate_batch(same_text)
    assert np.abs(one.wave - two.wave).max() > 0.01  # upstream's batch would give both the same noise
    assert np.abs(one.wave - engine.generate(refs[0], TEXTS[0], PARAMS, 1).wave).max() < ROUNDING


def test_mixed_sampling_parameters_are_refused_in_one_batch(engine, refs):
    other = tts.Generation(refs[0], TEXTS[0], tts.SamplingParams(nfe_steps=6), 1)
    with pytest.raises(ValueError, match="same sampling parameters"):
        engine.generate_batch([gens(refs)[0], other])


def submit_together(batcher: Batcher, jobs: list[list[tts.Generation]]) -> list[list[tts.ChunkAudio]]:
    """Each job from its own thread, as the async handler runs them; all announced before any submits."""
    barrier = threading.Barrier(len(jobs))
    results: list[list[tts.ChunkAudio]] = [[] for _ in jobs]

    def job(i: int) -> None:
        with batcher.incoming() as incoming:
            barrier.wait(timeout=10)
            pending = incoming.submit(jobs[i])
        results[i] = [f.result(timeout=60) for f in pending]

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads)
    return results


def test_concurrent_jobs_share_batches_and_keep_their_results(engine, refs):
    batcher = Batcher(engine, max_size=4, wait_seconds=2.0)
    jobs = [[g] for g in gens(refs)] + [[tts.Generation(refs[0], TEXTS[0], PARAMS, 99)]]
    results = submit_together(batcher, jobs)
    assert [r[0].batch_size for r in results] == [4, 4, 4, 4]
    for job, (out,) in zip(jobs, results, strict=True):
        alone = engine.generate(job[0].ref, job[0].text, PARAMS, job[0].seed)
        assert np.abs(out.wave - alone.wave).max() < ROUNDING


def test_batches_are_capped_and_split_by_sampling_parameters(engine, refs):
    batcher = Batcher(engine, max_size=2, wait_seconds=2.0)
    slow = tts.SamplingParams(nfe_steps=6)
    jobs = [gens(refs)[:3], [tts.Generation(refs[1], TEXTS[0], slow, 5)]]
    results = submit_together(batcher, jobs)
    assert [o.batch_size for o in results[0]] == [2, 2, 1]  # 3 chunks, at most 2 at a time
    assert results[1][0].batch_size == 1  # other step count: its own batch


def test_batch_size_one_gives_the_same_bytes_as_running_alone(engine, refs):
    batcher = Batcher(engine, max_size=1, wait_seconds=0.5)
    results = submit_together(batcher, [[g] for g in gens(refs)])
    for g, (out,) in zip(gens(refs), results, strict=True):
        assert out.batch_size == 1
        assert np.array_equal(out.wave, engine.generate(g.ref, g.text, PARAMS, g.seed).wave)


def test_a_job_that_never_submits_holds_a_batch_only_for_the_wait(engine, refs):
    batcher = Batcher(engine, max_size=4, wait_seconds=0.2)
    with batcher.incoming():  # announced, then fails before submitting (say, its voice URL timed out)
        out = batcher.submit(gens(refs)[:1])[0].result(timeout=30)
    assert out.batch_size == 1


def test_a_failing_batch_fails_its_jobs_and_the_batcher_goes_on(engine, refs, monkeypatch):
    batcher = Batcher(engine, max_size=4, wait_seconds=0.0)

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with monkeypatch.context() as patch:
        patch.setattr(engine._model.transformer, "forward", out_of_memory)
        failed = batcher.submit(gens(refs))
        for future in failed:
            with pytest.raises(ModelError, match="out of GPU memory"):
                future.result(timeout=30)
    assert batcher.submit(gens(refs)[:1])[0].result(timeout=30).wave.size > 0


def test_a_failing_job_drops_its_chunks_still_queued(worker, monkeypatch):
    """The model fails on a long job's first chunk: the job fails at once and its other chunks are not
    sampled (at most the one the batcher had already taken)."""
    from tts_worker.handler import make_handler

    monkeypatch.setattr(worker, "batcher", Batcher(worker.engine, max_size=1, wait_seconds=0.0))
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        time.sleep(1.0)  # a sampling pass takes time; the job cancels its other chunks meanwhile
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(worker.engine, "_sample", broken)
    text = " ".join(f"Sentence {i} makes this text long enough for several chunks of its own." for i in range(12))
    result = make_handler(worker)({"id": "long-fail", "input": {"text": text, "nfe_steps": 2}})
    assert result["error"] == "model_error: synthesis failed in the model; the worker will restart"
    time.sleep(1.5)  # time enough for the batcher thread to take another of its chunks, were it going to
    assert 1 <= len(calls) <= 2  # of the job's five or more chunks


def test_batching_is_on_by_default_on_a_gpu_only():
    from tts_worker.settings import Settings

    assert Settings().resolved_batch_max_size("cuda") == 4
    assert Settings().resolved_batch_max_size("cpu") == 1  # slower there: the masked attention is unfused
    assert Settings(batch_max_size=2).resolved_batch_max_size("cpu") == 2
    assert Settings(batch_max_size=1).resolved_batch_max_size("cuda:0") == 1
