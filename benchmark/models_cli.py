"""`marinebench models` and `marinebench ask`: see the presets, and taste the model."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list model presets, where their files are, and if present")
    p.set_defaults(func=_models)

    p = sub.add_parser("ask", help="answer one question with a model's chat template (greedy)")
    p.add_argument("question")
    p.add_argument("--model", default=None, help="preset name, hub id or local folder")
    p.add_argument("--adapter", default=None, help="a PEFT adapter folder to apply")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--dtype", default=None, help="auto (default), bf16, fp16, fp32")
    p.set_defaults(func=_ask)


def _models(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from benchmark.models import DEFAULT_MODEL, list_models

    table = Table(title="MarineBench models")
    for col in ("name", "hub id", "present", "files"):
        table.add_column(col, overflow="fold")
    for row in list_models():
        name = row.name + (" (default)" if row.name == DEFAULT_MODEL else "")
        table.add_row(name, row.hub_id, "yes" if row.present else "no", row.location)
    Console(width=160).print(table)
    return 0


def _ask(args: argparse.Namespace) -> int:
    from benchmark.chat import answer
    from benchmark.device import choose_placement
    from benchmark.models import load_model

    placement = choose_placement(args.device, args.dtype)
    model, tokenizer = load_model(args.model, placement)
    if args.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, args.adapter)
        model.eval()
    (reply,) = answer(model, tokenizer, [args.question], max_new_tokens=args.max_new_tokens)
    print(reply)
    return 0
