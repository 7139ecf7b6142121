"""Base model and several LoRA adapters in one batch: each row of a batch runs the model its
own adapter makes (or the base), for the opt-in fast evaluation path (fast.py).

Why not PEFT's mixed-adapter batches (`adapter_names=`): they split every LoRA layer's input
by boolean masks, one sub-batch per adapter, which on CPU adds ~15 small ops per linear per
adapter to each decoding step. Here every wrapped linear adds two dense matmuls whatever the
number of adapters: the rows' input times all adapters' A matrices stacked ([rows, sum of r]),
a per-row mask that keeps the row's own adapter's slice (times its scaling, zero elsewhere),
times all B matrices stacked. Rows of other adapters contribute exact zeros. PEFT still reads
and checks each adapter (PeftModel.from_pretrained) and hands over its LoRA weights.

The LoRA branch runs in fp32 on an input cast to fp32, as PEFT's unmerged layers do when the
adapter was saved in fp32; the exact path merges the update into the base weights instead, so
numbers differ from it by rounding only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.evaluation.adapters import AdapterInfo

#: PEFT prefixes a LoRA layer's name with these inside a PeftModel around a causal LM
_PEFT_PREFIX = "base_model.model."


@dataclass
class AdapterWeights:
    """One adapter's LoRA matrices per linear module path of the base model."""

    name: str
    rank: int
    #: module path -> (A [r, in], B [out, r], scaling)
    layers: dict[str, tuple[torch.Tensor, torch.Tensor, float]]


def read_adapter(model, info: AdapterInfo, label: str) -> AdapterWeights:
    """The adapter's LoRA weights as PEFT loads them onto `model`; `model` is left as it was.
    Adapters this path cannot run unmerged (DoRA, modules_to_save, LoRA on embeddings, ...)
    are refused with the adapter's path in the message."""
    from peft.tuners.lora import Linear as LoraLinear
    from peft.tuners.lora import LoraLayer

    from benchmark.evaluation.merging import load_peft

    peft_model = load_peft(model, info, label)
    try:
        config = peft_model.peft_config["default"]
        unsupported = {
            "use_dora": bool(getattr(config, "use_dora", False)),
            "modules_to_save": bool(getattr(config, "modules_to_save", None)),
            "trainable_token_indices": bool(getattr(config, "trainable_token_indices", None)),
            "lora_bias": bool(getattr(config, "lora_bias", False)),
            "fan_in_fan_out": bool(getattr(config, "fan_in_fan_out", False)),
        }
        if bad := [k for k, v in unsupported.items() if v]:
            raise UserError(
                f"adapter {info.path}: the fast evaluation path runs plain LoRA on linear "
                f"layers only; this adapter sets {', '.join(bad)} (evaluate it without --fast)"
            )
        layers: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        ranks = set()
        for name, module in peft_model.named_modules():
            if not isinstance(module, LoraLayer) or "default" not in module.lora_A:
                continue
            if not isinstance(module, LoraLinear) or not isinstance(module.base_layer, nn.Linear):
                raise UserError(
                    f"adapter {info.path}: module {name} is a {type(module).__name__}; the fast "
                    "evaluation path runs LoRA on nn.Linear layers only (evaluate without --fast)"
                )
            a = module.lora_A["default"].weight.detach().float().clone()
            b = module.lora_B["default"].weight.detach().float().clone()
            path = name.removeprefix(_PEFT_PREFIX)
            layers[path] = (a, b, float(module.scaling["default"]))
            ranks.add(a.shape[0])
    finally:
        peft_model.unload()
    if not layers:
        raise UserError(f"adapter {info.path}: no LoRA layer found")
    return AdapterWeights(info.name, max(ranks), layers)


class RowAdapters:
    """Which model each row of the next forward passes runs, shared by every wrapped linear.

    `slices` maps a model index (0 = base, i = the i-th adapter) to its columns of the stacked
    LoRA rank; `rows(ids)` gives each row of the next passes its model."""

    def __init__(self, adapters: list[AdapterWeights]) -> None:
        self.slices: list[slice] = [slice(0, 0)]
        start = 0
        for adapter in adapters:
            self.slices.append(slice(start, start + adapter.rank))
            start += adapter.rank
        self.width = start
        self.scalings: list[dict[str, float]] = [{}] + [
            {path: s for path, (_, _, s) in a.layers.items()} for a in adapters
        ]
        self.model_ids: torch.Tensor = torch.zeros(1, dtype=torch.long)
        self._masks: dict[str, torch.Tensor] = {}

    def rows(self, model_ids: torch.Tensor) -> None:
        self.model_ids = model_ids.cpu()
        self._masks.clear()

    def mask(self, path: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """[rows, width]: the row's adapter scaling on its own columns, else 0."""
        if path not in self._masks:
            table = torch.zeros(len(self.slices), self.width)
            for i, cols in enumerate(self.slices):
                if i and path in self.scalings[i]:
                    table[i, cols] = self.scalings[i][path]
            self._masks[path] = table[self.model_ids].to(device, dtype)
        return self._masks[path]


class MultiLoRALinear(nn.Module):
    """base(x) + B_all((A_all x) * row mask): the base linear plus, per row, its own adapter."""

    def __init__(self, base: nn.Linear, path: str, a: torch.Tensor, b: torch.Tensor, rows):
        super().__init__()
        self.base = base
        self.path = path
        dtype = base.weight.dtype
        self.register_buffer("lora_a", a.to(base.weight.device, dtype), persistent=False)
        self.register_buffer("lora_b", b.to(base.weight.device, dtype), persistent=False)
        self.row_adapters = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        mask = self.row_adapters.mask(self.path, x.device, x.dtype)
        h = F.linear(x, self.lora_a)
        h = h * (mask if x.dim() == 2 else mask.view(mask.shape[0], *([1] * (x.dim() - 2)), -1))
        return out + F.linear(h, self.lora_b)


@contextlib.contextmanager
def installed(model, adapters: list[AdapterWeights]) -> Iterator[RowAdapters]:
    """Within the block, every linear some adapter targets is a MultiLoRALinear; after, the
    model holds its original modules again (its weights are never written)."""
    rows = RowAdapters(adapters)
    paths = sorted({p for a in adapters for p in a.layers})
    originals: dict[str, nn.Module] = {}
    try:
        for path in paths:
            parent_path, _, child = path.rpartition(".")
            parent = model.get_submodule(parent_path)
            base = getattr(parent, child)
            cols_a, cols_b = [], []
            for adapter in adapters:
                if path in adapter.layers:
                    a, b, _ = adapter.layers[path]
                else:
                    a = torch.zeros(adapter.rank, base.in_features)
                    b = torch.zeros(base.out_features, adapter.rank)
                if a.shape[0] < adapter.rank:  # rank_pattern: pad to the adapter's width
                    pad = adapter.rank - a.shape[0]
                    a = torch.cat([a, torch.zeros(pad, a.shape[1])])
                    b = torch.cat([b, torch.zeros(b.shape[0], pad)], dim=1)
                cols_a.append(a)
                cols_b.append(b)
            wrapped = MultiLoRALinear(base, path, torch.cat(cols_a), torch.cat(cols_b, dim=1), rows)
            originals[path] = base
            setattr(parent, child, wrapped)
        yield rows
    finally:
        for path, base in originals.items():
            parent_path, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent_path), child, base)
