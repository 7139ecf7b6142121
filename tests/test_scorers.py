"""Scorers against known values, and the empty-prediction rule (0 on every metric, no crash)."""

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


def test_tfidf_cosine_fitted_on_the_corpus():
    # corpus {"coral reef", "coral fish"}: idf(coral) = 1, idf(reef) = idf(fish) = 1 + ln(3/2)
    idf = 1 + math.log(1.5)
    expected = 1 / (1 + idf**2)
    sims = scorers.tfidf_cosine(["coral fish"], ["coral reef"])
    assert sims == [pytest.approx(expected)]
    assert scorers.tfidf_cosine(["whale song"], ["whale song"]) == [pytest.approx(1.0)]
    assert scorers.tfidf_cosine(["kelp forest"], ["deep trench"]) == [0.0]


def test_embedding_cosine_identical_and_ordering():
    sims = scorers.embedding_cosine(
        ["A whale is swimming in the sea.", "Quarterly tax returns are due.", "Whales swim."],
        ["A whale is swimming in the sea.", "The whale swims in the ocean.", "Whales swim."],
    )
    assert sims[0] == pytest.approx(1.0, abs=1e-4)
    assert sims[2] == pytest.approx(1.0, abs=1e-4)
    assert sims[1] < 0.3


def test_bertscore_matches_the_library_and_is_batched():
    from bert_score import score

    preds = ["Corals host symbiotic algae.", "Sharks are fish.", "Krill eat phytoplankton."]
    refs = ["Corals house zooxanthellae algae.", "Sharks are cartilaginous fish.", "Krill eat."]
    ours = scorers.bertscore_f1(preds, refs, batch_size=2)
    model_type, layers = scorers.bertscore_model_spec("minilm")
    _, _, f1 = score(preds, refs, model_type=model_type, num_layers=layers, batch_size=64)
    assert ours == pytest.approx(f1.tolist(), abs=1e-5)
    assert scorers.bertscore_f1(["Sharks are fish."], ["Sharks are fish."])[0] == pytest.approx(
        1.0, abs=1e-4
    )


def test_bertscore_model_choice():
    assert scorers.bertscore_model_spec("roberta-large") == ("roberta-large", 17)
    model_type, layers = scorers.bertscore_model_spec("minilm")
    assert layers == 6 and model_type.endswith("model")
    with pytest.raises(ValueError, match="unknown BERTScore model"):
        scorers.bertscore_model_spec("gpt-9")


#: the scorers of the metrics that need the whole corpus, as tasks/utils.py aggregates them
CORPUS_SCORERS = {
    "bertscore_f1": scorers.bertscore_f1,
    "tfidf_cosine": scorers.tfidf_cosine,
    "embedding_cosine": scorers.embedding_cosine,
}


def test_the_scorers_compute_exactly_the_registered_generation_metrics():
    assert set(CORPUS_SCORERS) == set(scorers.CORPUS_METRICS)
    computed = set(scorers.pair_scores("a", "a")) | set(scorers.CORPUS_METRICS)
    for task in GENERATION_TASKS:
        assert computed == {m.name for m in metrics_of(task)}


@pytest.mark.parametrize("empty", ["", "   ", "\n\t "])
def test_empty_prediction_scores_zero_everywhere(empty):
    reference = "Sea stars move with tube feet."
    predictions, references = [empty, reference], [reference, reference]
    pair = scorers.pair_scores(empty, reference)
    corpus = {name: fn(predictions, references) for name, fn in CORPUS_SCORERS.items()}
    assert all(value == 0.0 for value in pair.values())
    assert all(values[0] == 0.0 for values in corpus.values())
    same = scorers.pair_scores(reference, reference)
    assert same["exact_match"] == 1.0 and same["rouge1"] == 1.0


def test_all_empty_corpus_does_not_crash():
    for fn in CORPUS_SCORERS.values():
        assert fn(["", " "], ["a", "b"]) == [0.0, 0.0]


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="pair up"):
        scorers.tfidf_cosine(["a"], ["a", "b"])
