"""Scorers against known values, the fixed TF-IDF function, length and its control, and the
empty-prediction rule (0 on every metric, no crash)."""

from __future__ import annotations

import math

import pytest

from benchmark import scorers
from benchmark.contracts.results import GENERATION_TASKS, metrics_of


def test_squad_normalisation():
    assert scorers.normalize_answer("The  Cat, sat on A mat!") == "cat sat on mat"
    assert scorers.normalize_answer("An  apple\tthe end.") == "apple end"


def test_exact_match_uses_normalisation():
    assert scorers.exact_match("The cat.", "cat") == 1.0
    assert scorers.exact_match("a cat", "dog") == 0.0


def test_token_f1_known_value():
    # prediction tokens {cat, sat} all in reference {cat, sat, on, mat}: P = 1, R = 1/2
    assert scorers.token_f1("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    assert scorers.token_f1("dog", "cat") == 0.0
    assert scorers.token_f1("Cat sat.", "cat sat") == 1.0


def test_rouge_known_values_with_stemming():
    # stemmed: prediction [the, cat, are, run], reference [the, cat, run]
    scores = scorers.rouge("the cats are running", "the cat runs")
    assert scores["rouge1"] == pytest.approx(6 / 7)  # P 3/4, R 1
    assert scores["rouge2"] == pytest.approx(0.4)  # 1 shared bigram: P 1/3, R 1/2
    assert scores["rougeL"] == pytest.approx(6 / 7)  # LCS 3
    assert scores["rougeL_precision"] == pytest.approx(3 / 4)  # LCS over the answer's 4 words
    assert scores["rougeL_recall"] == pytest.approx(1.0)  # LCS over the reference's 3 words


def test_tfidf_cosine_is_one_function_fitted_on_its_corpus():
    # fitted on {"coral reef", "coral fish"}: idf(coral) = 1, idf(reef) = idf(fish) = 1 + ln(3/2)
    tfidf = scorers.TfidfCosine(["coral reef", "coral fish"])
    idf = 1 + math.log(1.5)
    assert tfidf(["coral fish"], ["coral reef"]) == [pytest.approx(1 / (1 + idf**2))]
    assert tfidf(["reef coral"], ["coral reef"]) == [pytest.approx(1.0)]
    assert tfidf(["whale song"], ["coral reef"]) == [0.0]  # words the corpus never saw weigh 0
    # the answers scored alongside change nothing: no refit on the predictions
    alone = tfidf(["coral fish"], ["coral reef"])[0]
    for others in (["fish fish fish"], ["reef"], ["coral reef fish", "", "whale"]):
        batch = tfidf(["coral fish", *others], ["coral reef"] * (1 + len(others)))
        assert batch[0] == alone


def test_tfidf_is_fitted_once_per_key(monkeypatch):
    monkeypatch.setattr(scorers, "_TFIDF", {})
    fits = []

    def corpus():
        fits.append(1)
        return ["coral reef", "coral fish"]

    first = scorers.tfidf_for("dataset-hash", corpus)
    assert scorers.tfidf_for("dataset-hash", corpus) is first
    assert scorers.tfidf_for("dataset-hash") is first
    assert len(fits) == 1
    with pytest.raises(KeyError, match="no TF-IDF function fitted for dataset 'other'"):
        scorers.tfidf_for("other")
    with pytest.raises(ValueError, match="cannot fit TF-IDF"):
        scorers.TfidfCosine(["a", "!"])  # no word of two characters


def test_length_in_words_and_its_ratio():
    reference = "Sea stars move with tube feet."  # 6 words
    assert scorers.length_scores("They crawl on tube feet.", reference) == {
        "answer_words": 5.0,
        "length_ratio": pytest.approx(5 / 6),
    }
    long = "Sea stars move slowly,\nusing hundreds of small tube feet on their arms."
    assert scorers.length_scores(long, reference) == {
        "answer_words": 13.0,
        "length_ratio": pytest.approx(13 / 6),
    }
    assert scorers.length_scores("", reference) == {"answer_words": 0.0, "length_ratio": 0.0}


def test_cut_to_reference_keeps_the_answers_first_words_as_written():
    reference = "Sea stars move with tube feet."  # 6 words
    long = "Sea  stars move slowly,\nusing hundreds of small tube feet."
    assert scorers.cut_to_reference(long, reference) == "Sea  stars move slowly,\nusing hundreds"
    for short in ("Tube feet.", "Sea stars move with tube feet!", "  Tube  feet  "):
        assert scorers.cut_to_reference(short, reference) == short  # not longer: as it is
    assert scorers.cut_to_reference("", reference) == ""


def test_length_controlled_scores_equal_the_full_ones_unless_the_answer_is_longer():
    reference = "Sea stars move with tube feet."
    tfidf = scorers.TfidfCosine([reference, "Krill eat phytoplankton in cold water."])
    controlled = [m for m in scorers.LENGTH_CONTROLLED if m in scorers.pair_scores("", "", tfidf)]
    assert controlled == ["rougeL", "token_f1", "tfidf_cosine"]  # bertscore_f1: a corpus metric
    for answer in ("Sea stars move with tube feet.", "They crawl on tube feet.", "Tube feet."):
        scores = scorers.pair_scores(answer, reference, tfidf)
        for metric in controlled:
            assert scores[metric + scorers.LC_SUFFIX] == scores[metric], (answer, metric)
    padded = "Sea stars move with tube feet, and krill eat phytoplankton in cold water."
    scores = scorers.pair_scores(padded, reference, tfidf)
    cut = scorers.pair_scores("Sea stars move with tube feet,", reference, tfidf)
    assert scores["answer_words"] == 13.0
    for metric in controlled:
        assert scores[metric + scorers.LC_SUFFIX] == pytest.approx(1.0)  # the padding is cut off
        assert scores[metric + scorers.LC_SUFFIX] == cut[metric]
        assert scores[metric] < 0.8, metric  # the full answer pays for its padding


def test_embedding_cosine_identical_and_ordering():
    sims = scorers.embedding_cosine(
        ["A whale is swimming in the sea.", "Quarterly tax returns are due.", "Whales swim."],
        ["A whale is swimming in the sea.", "The whale swims in the ocean.", "Whales swim."],
    )
    assert sims[0] == pytest.approx(1.0, abs=1e-4)
    assert sims[2] == pytest.approx(1.0, abs=1e-4)
    assert sims[1] < 0.3


def test_bertscore_matches_the_library_and_scores_each_pair_once(monkeypatch):
    from bert_score import score

    monkeypatch.setattr(scorers, "_BERTSCORE_CACHE", {})
    calls = []
    encoder = scorers._bertscore_pairs

    def counted(model, predictions, references, batch_size):
        calls.append(list(zip(predictions, references, strict=True)))
        return encoder(model, predictions, references, batch_size)

    monkeypatch.setattr(scorers, "_bertscore_pairs", counted)
    preds = ["Corals host symbiotic algae.", "Sharks are fish.", "Krill eat phytoplankton."]
    refs = ["Corals house zooxanthellae algae.", "Sharks are cartilaginous fish.", "Krill eat."]
    ours = scorers.bertscore([*preds, preds[1]], [*refs, refs[1]], batch_size=2)
    model_type, layers = scorers.bertscore_model_spec("minilm")
    lib = score(preds, refs, model_type=model_type, num_layers=layers, batch_size=64)
    for part, values in zip(scorers.BERTSCORE_PARTS, lib, strict=True):
        assert ours[part] == pytest.approx([*values.tolist(), values[1].item()], abs=1e-5)
    assert calls == [list(zip(preds, refs, strict=True))]  # one call, each distinct pair once
    again = scorers.bertscore(preds[:2], refs[:2])
    assert calls == [list(zip(preds, refs, strict=True))]  # memoised
    assert again["f1"] == ours["f1"][:2]
    same = scorers.bertscore(["Sharks are fish."], ["Sharks are fish."])
    assert same["f1"][0] == pytest.approx(1.0, abs=1e-4)


def test_bertscore_model_choice():
    assert scorers.bertscore_model_spec("roberta-large") == ("roberta-large", 17)
    model_type, layers = scorers.bertscore_model_spec("minilm")
    assert layers == 6 and model_type.endswith("model")
    with pytest.raises(ValueError, match="unknown BERTScore model"):
        scorers.bertscore_model_spec("gpt-9")


def _tfidf() -> scorers.TfidfCosine:
    return scorers.TfidfCosine(["Sea stars move with tube feet.", "Krill eat phytoplankton."])


#: the scorers of the metrics that need the whole corpus, as tasks/utils.py aggregates them
CORPUS_SCORERS = {
    "bertscore": lambda preds, refs: scorers.bertscore(preds, refs)["f1"],
    "embedding_cosine": scorers.embedding_cosine,
}


def test_the_scorers_compute_exactly_the_registered_generation_metrics():
    assert set(scorers.CORPUS_METRICS) == {
        *(f"bertscore_{part}" for part in scorers.BERTSCORE_PARTS),
        "bertscore_f1" + scorers.LC_SUFFIX,
        "embedding_cosine",
    }
    computed = set(scorers.pair_scores("a", "a", _tfidf())) | set(scorers.CORPUS_METRICS)
    for task in GENERATION_TASKS:
        assert computed == {m.name for m in metrics_of(task)}
    assert {m + scorers.LC_SUFFIX for m in scorers.LENGTH_CONTROLLED} <= computed


@pytest.mark.parametrize("empty", ["", "   ", "\n\t "])
def test_empty_prediction_scores_zero_everywhere(empty):
    reference = "Sea stars move with tube feet."
    predictions, references = [empty, reference], [reference, reference]
    pair = scorers.pair_scores(empty, reference, _tfidf())
    bert = scorers.bertscore(predictions, references)
    assert all(value == 0.0 for value in pair.values())
    assert all(values[0] == 0.0 for values in bert.values())
    assert scorers.embedding_cosine(predictions, references)[0] == 0.0
    same = scorers.pair_scores(reference, reference, _tfidf())
    assert same["exact_match"] == 1.0 and same["rouge1"] == 1.0 and same["length_ratio"] == 1.0


def test_all_empty_corpus_does_not_crash():
    for fn in CORPUS_SCORERS.values():
        assert fn(["", " "], ["a", "b"]) == [0.0, 0.0]


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="pair up"):
        _tfidf()(["a"], ["a", "b"])
    with pytest.raises(ValueError, match="pair up"):
        scorers.bertscore(["a"], ["a", "b"])


_SCORE_IN_A_PROCESS = """
import json, sys
from benchmark import scorers
pairs = json.loads(sys.argv[1])
preds, refs = [p for p, _ in pairs], [r for _, r in pairs]
if sys.argv[2] == "warm":  # some scored first: the rest would share a batch with fewer others
    scorers.bertscore(preds[:4], refs[:4])
    scorers.embedding_cosine(preds[:4], refs[:4])
print(json.dumps([scorers.bertscore(preds, refs), scorers.embedding_cosine(preds, refs)]))
"""


def test_encoder_scores_do_not_depend_on_the_process_or_what_it_scored_before():
    """BERTScore and embedding cosine give the same bits in two processes with other string
    hash seeds (bert-score orders its sentences by hash) and another scoring history."""
    import json
    import os
    import subprocess
    import sys

    words = [
        "coral",
        "reef",
        "algae",
        "whale",
        "krill",
        "kelp",
        "urchin",
        "otter",
        "shark",
        "ray",
        "tide",
        "plankton",
    ]
    pairs = [
        (" ".join(words[i : i + 2 + i % 4]), " ".join(words[i + 1 : i + 3 + i % 3]))
        for i in range(9)
    ]
    outs = []
    for seed, history in (("1", "cold"), ("2", "warm")):
        proc = subprocess.run(
            [sys.executable, "-c", _SCORE_IN_A_PROCESS, json.dumps(pairs), history],
            env={**os.environ, "PYTHONHASHSEED": seed, "HF_HUB_OFFLINE": "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs.append(proc.stdout.strip().splitlines()[-1])
    assert outs[0] == outs[1]
