"""The local-model source: the same generation prompts through any transformers chat model.

Greedy decoding through the model's own chat template (benchmark.chat.answer), so a rerun with
the same model gives the same pairs. Small models often reply with broken JSON: such replies are
dropped and reported like any malformed generator reply.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.dataset.config import LocalConfig
from benchmark.dataset.generate import Generated, parse_reply, render_prompt


def generate(src: Path, taxonomy: dict[str, str], topics: list[str], cfg: LocalConfig) -> Generated:
    from benchmark.chat import answer
    from benchmark.device import choose_placement
    from benchmark.models import load_model, resolve_model

    model, tokenizer = load_model(cfg.model, choose_placement(cfg.device, cfg.dtype))
    resolved = resolve_model(cfg.model)
    name = resolved.preset.name if resolved.preset else Path(resolved.spec).name
    prompts = [render_prompt(src, t, taxonomy[t], cfg.pairs_per_topic) for t in topics]
    replies = answer(
        model, tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.batch_size
    )
    out = Generated()
    for topic, text in zip(topics, replies, strict=True):
        parse_reply(text, topic=topic, source=f"local:{name}", origin=f"local:{topic}", out=out)
    return out
