"""Chat-template formatting, prompt-label masking, batching, selective loss, and --plan."""

from __future__ import annotations

import pytest
import torch

from benchmark.errors import UserError
from benchmark.train import data
from benchmark.train.config import config_from_dict
from benchmark.train.loss import SelectiveLoss, full_logits_loss
from benchmark.train.modeling import plan


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _check_masking(tokenizer, question, answer):
    ex = data.encode(tokenizer, question, answer, max_length=512)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    n_prompt = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    # Every prompt token (system prompt, user turn, assistant header) is ignored by the loss ...
    assert ex.labels[:n_prompt] == [data.IGNORE] * n_prompt
    # ... and every token after it is supervised, with labels equal to the input ids.
    assert ex.labels[n_prompt:] == ex.input_ids[n_prompt:]
    assert all(label != data.IGNORE for label in ex.labels[n_prompt:])
    supervised = tokenizer.decode(ex.input_ids[n_prompt:])
    return ex, prompt, supervised


def test_prompt_tokens_are_masked_and_answer_plus_end_of_turn_supervised(tiny_tokenizer):
    ex, prompt, supervised = _check_masking(tiny_tokenizer, "What do krill eat?", "Phytoplankton.")
    assert "<|im_start|>system" in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert supervised == "Phytoplankton.<|im_end|>"
    assert ex.input_ids[-1] == tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_smollm2_template_masking(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    ex, prompt, supervised = _check_masking(tokenizer, "What do krill eat?", "Phytoplankton.")
    assert "You are a helpful AI assistant named SmolLM" in prompt  # default system prompt
    assert supervised == "Phytoplankton.<|im_end|>"


def test_tinyllama_style_template_masking(tiny_tokenizer):
    """The seed's format (<|user|> ... </s> <|assistant|>), TinyLlama's own template text."""
    tiny_tokenizer = tiny_tokenizer.__class__.from_pretrained(tiny_tokenizer.name_or_path)
    tiny_tokenizer.eos_token = "<|im_end|>"
    tiny_tokenizer.chat_template = (
        "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
        "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
        "{% elif message['role'] == 'assistant' %}\n"
        "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n"
        "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
        "{% endfor %}"
    )
    ex, prompt, supervised = _check_masking(tiny_tokenizer, "What do krill eat?", "Phytoplankton.")
    assert prompt.startswith("<|user|>\nWhat do krill eat?")
    assert supervised.strip() == "Phytoplankton.<|im_end|>"


def test_prompt_longer_than_max_length_is_dropped(tiny_tokenizer):
    assert data.encode(tiny_tokenizer, "word " * 200, "x", max_length=32) is None
    ex = data.encode(tiny_tokenizer, "Why?", "because " * 100, max_length=40)
    assert len(ex.input_ids) == 40


def test_length_grouped_batches_partition_and_are_deterministic():
    lengths = [((i * 37) % 90) + 10 for i in range(100)]
    batches = data.epoch_batches(100, lengths, 8, seed=1, epoch=0, grouped=True)
    assert sorted(i for b in batches for i in b) == list(range(100))
    assert batches == data.epoch_batches(100, lengths, 8, seed=1, epoch=0, grouped=True)
    assert batches != data.epoch_batches(100, lengths, 8, seed=1, epoch=1, grouped=True)
    # grouping keeps padding small: total padded width far below random batching
    grouped_pad = sum(
        max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches
    )
    shuffled = data.epoch_batches(100, lengths, 8, seed=1, epoch=0, grouped=False)
    random_pad = sum(
        max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in shuffled
    )
    assert grouped_pad < random_pad / 4


def test_collate_pads_to_longest_in_batch_not_max_length():
    a = data.Example([5, 6, 7], [data.IGNORE, 6, 7])
    b = data.Example([5, 6, 7, 8, 9], [data.IGNORE, data.IGNORE, 7, 8, 9])
    enc = data.collate([a, b], pad_id=0)
    assert enc["input_ids"].shape == (2, 5)
    assert enc["input_ids"][0].tolist() == [5, 6, 7, 0, 0]
    assert enc["labels"][0].tolist() == [data.IGNORE, 6, 7, data.IGNORE, data.IGNORE]


def test_selective_loss_equals_full_logits_loss(tiny_model_dir, tiny_tokenizer):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from benchmark.train.modeling import lora_config

    config = config_from_dict({"lora": {"r": 4, "target_modules": ["q_proj"]}}, "t", "t")
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32),
        lora_config(config),
    ).eval()
    examples = [
        data.encode(tiny_tokenizer, q, a, 128)
        for q, a in [("What do krill eat?", "Phytoplankton."), ("Why?", "Because corals bleach.")]
    ]
    enc = data.collate(examples, tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        fast, n_fast = SelectiveLoss(model)(enc["input_ids"], enc["labels"])
        full, n_full = full_logits_loss(model, enc["input_ids"], enc["labels"])
    assert int(n_fast) == int(n_full) == sum(e.n_targets for e in examples)
    assert torch.allclose(fast, full, rtol=1e-5)


def test_plan_reproduces_the_seed_tinyllama_figure():
    config = config_from_dict(
        {"model": "tinyllama-1.1b-chat", "quantization": "nf4"}, "t", "tinyllama-qlora-r16"
    )
    result = plan(config)
    assert result.trainable_params == 12_615_680  # 22 layers x 16 x (sum of in+out of 7 linears)
    assert f"{result.trainable_pct:.2f}" == "1.13"
    assert result.total_params == 1_100_048_384 + 12_615_680
    assert result.total_params_4bit_reported < result.total_params


def test_plan_cli_prints_counts_without_weights(capsys):
    from benchmark.cli import main

    assert main(["train", "--config", "tinyllama-qlora-r16", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "12,615,680" in out and "1.13%" in out and "4-bit" in out


def test_plan_rejects_missing_target_module(tiny_model_dir):
    from benchmark.errors import UserError

    config = config_from_dict(
        {"model": str(tiny_model_dir), "lora": {"target_modules": ["q_proj", "c_attn"]}}, "t", "t"
    )
    with pytest.raises(UserError, match="c_attn"):
        plan(config)


def test_fast_dropout_matches_dropout_statistics_and_is_seeded():
    from benchmark.train.dropout import FastDropout

    drop = FastDropout(0.05).train()
    x = torch.ones(400, 500)
    torch.manual_seed(0)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.05) < 0.003
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.95))
    torch.manual_seed(0)
    assert torch.equal(drop(x), y)
    assert drop.eval()(x) is x


def _budget_config(**kw):
    return config_from_dict({"batch_size": 4, "epochs": 1, **kw}, "test", "budget")


def _tokens(steps, lengths):
    return sum(lengths[i] for _, group in steps for b in group for i in b)


def test_token_budget_of_one_pass_gives_exactly_the_one_epoch_run():
    from benchmark.train.trainer import _step_batches

    lengths = [((i * 37) % 90) + 10 for i in range(64)]
    one_epoch = _step_batches(64, lengths, _budget_config(), world=1)
    budget = _tokens(one_epoch, lengths)
    assert _step_batches(64, lengths, _budget_config(token_budget=budget), world=1) == one_epoch


def test_token_budget_repeats_a_small_set_reshuffled_and_cuts_a_large_one():
    from benchmark.train.trainer import _step_batches

    big = [((i * 37) % 90) + 10 for i in range(64)]
    budget = _tokens(_step_batches(64, big, _budget_config(), world=1), big)
    small = big[:8]  # an eighth of the pairs: about eight passes
    steps = _step_batches(8, small, _budget_config(token_budget=budget), world=1)
    epochs = [epoch for epoch, _ in steps]
    assert epochs == sorted(epochs) and 6 <= epochs[-1] <= 9
    assert _tokens(steps, small) >= budget > _tokens(steps[:-1], small)  # stops at the budget
    orders = {e: tuple(i for k, g in steps if k == e for b in g for i in b) for e in set(epochs)}
    assert all(sorted(orders[e]) == list(range(8)) for e in set(epochs[:-1]))  # whole passes
    assert len(set(orders.values())) > 1  # each pass reshuffled (the batch order, when grouped)
    # a set twice the budget's size is cut inside its first pass
    double = big + big
    cut = _step_batches(128, double, _budget_config(token_budget=budget), world=1)
    assert {epoch for epoch, _ in cut} == {0}
    assert _tokens(cut, double) >= budget > _tokens(cut[:-1], double)


def test_token_budget_is_validated():
    with pytest.raises(UserError, match="token_budget"):
        _budget_config(token_budget=0)
