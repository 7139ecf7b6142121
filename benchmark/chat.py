"""Answer questions with a chat model through its own chat template, greedily (deterministic)."""

from __future__ import annotations

import torch


def chat_prompt(tokenizer, question: str, system: str | None = None) -> str:
    """The model's chat-template rendering of one user turn, ready for the assistant's reply."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@torch.inference_mode()
def answer(
    model, tokenizer, questions: list[str], max_new_tokens: int = 128, batch_size: int = 16
) -> list[str]:
    """Greedy answers to `questions`, batched with left padding (same output as one by one)."""
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    out: list[str] = []
    try:
        for start in range(0, len(questions), batch_size):
            prompts = [chat_prompt(tokenizer, q) for q in questions[start : start + batch_size]]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = enc.to(model.device)
            generated = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
            new = generated[:, enc["input_ids"].shape[1] :]
            out.extend(t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True))
    finally:
        tokenizer.padding_side = side
    return out
