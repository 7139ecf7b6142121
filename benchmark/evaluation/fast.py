"""The opt-in fast evaluation path (`marinebench evaluate --fast`): every model's answers
generated in one batch, greedy decoding that drops the rows that have ended.

Why: decoding a 135M model on CPU is bound by reading its weights once per step, so a step
of 128 rows costs about twice one of 32 (SmolLM2, bf16, 2 threads: ~150 vs ~75 ms); the base
and its adapters decoding side by side (multi_lora.py) fill the steps, and rows that have
ended stop costing steps (an adapter's answers end well before the base's).

lm-eval still runs each model on its own (`simple_evaluate`, its filters, metrics and logged
samples): the first model's generation call answers the requests for every model still to be
evaluated, the later models read theirs from memory. Likelihood requests are not batched
across models (a prompt pass is bound by arithmetic, not by reading the weights): they run as
on the exact path, each adapter merged into the base, so their numbers are the exact path's.
Generated answers differ from the exact path's by rounding only (another batch shape, the LoRA
update added unmerged), which can flip a greedy choice; `marinebench perf parity` reports how
far every metric mean moves against the exact path's confidence interval. A model's generation
seconds are its equal share of the shared pass (every model runs the same requests).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
from lm_eval.api.instance import Instance
from lm_eval.models.utils import (
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from tqdm import tqdm

from benchmark.errors import UserError
from benchmark.evaluation import multi_lora
from benchmark.evaluation.hflm import EvalHFLM

#: a row leaves the batch once this share of the batch's rows have ended
_COMPACT_SHARE = 1 / 8


def _kwargs_key(gen_kwargs: dict) -> str:
    return json.dumps(gen_kwargs, sort_keys=True, default=str)


class FastEvalHFLM(EvalHFLM):
    """EvalHFLM whose first generation call answers for every model in `models` at once.

    `models` maps each model's name to its index in `adapters` + 1 (0: the base); `merge(name)`
    is a context manager in which the base weights are that model's (the exact path's merged
    adapter), used for the likelihood requests. `select(name)` makes a model the one lm-eval
    evaluates next; `close()` leaves the base weights as loaded."""

    def __init__(
        self,
        *args,
        adapters: list[multi_lora.AdapterWeights],
        models: dict[str, int],
        merge: Callable[[str], AbstractContextManager],
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.adapters = adapters
        self.models = dict(models)
        self.merge = merge
        self.current = next(iter(self.models))
        self._generated: dict[tuple[str, str, str], list[int]] = {}
        self._shares: dict[str, dict[str, float]] = {m: defaultdict(float) for m in self.models}
        self._merged = contextlib.ExitStack()
        self._merged_for: str | None = None

    def select(self, name: str) -> None:
        self._unmerge()
        self.current = name
        self.reset_timing()

    def close(self) -> None:
        self._unmerge()

    def timing(self) -> dict:
        shared = dict(self._shares[self.current])
        generate_s = sum(shared.values())
        return {
            "generate_s": generate_s,
            "generated_tokens": self.generated_tokens,
            "gen_tok_s": self.generated_tokens / generate_s if generate_s else 0.0,
            "task_s": {**dict(self.task_s), **shared},
            "generation": "one batch for all models; each timed as an equal share",
        }

    def _unmerge(self) -> None:
        self._merged.close()
        self._merged = contextlib.ExitStack()
        self._merged_for = None

    def _merged_current(self) -> None:
        if self._merged_for != self.current:
            self._unmerge()
            self._merged.enter_context(self.merge(self.current))
            self._merged_for = self.current

    # --- likelihoods: the exact path's, on the merged model -----------------------------------

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False):
        self._merged_current()
        return super().loglikelihood(requests, disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False):
        self._merged_current()
        return super().loglikelihood_rolling(requests, disable_tqdm)

    # --- generation: every model in one batch ------------------------------------------------

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False):
        # _per_task's own timing of a task is overridden by the model's share in timing()
        out = self._per_task(self._generate_task, requests, disable_tqdm)
        self._count_generated(out)
        return out

    def _generate_task(self, requests: list[Instance], disable_tqdm: bool) -> list:
        """One task's answers for the current model; the first call answers for every model."""
        task = str(requests[0].task_name)
        keys = [(ctx, _kwargs_key(kw)) for ctx, kw in (r.args for r in requests)]
        pending = [m for m in self.models if any((m, *k) not in self._generated for k in keys)]
        if pending:
            start = time.perf_counter()
            by_kwargs: dict[str, list[tuple[str, dict]]] = defaultdict(list)
            for (ctx, kw), (_, kw_key) in zip((r.args for r in requests), keys, strict=True):
                if (ctx, kw) not in by_kwargs[kw_key]:
                    by_kwargs[kw_key].append((ctx, kw))
            self._unmerge()  # the LoRA updates are added per row to the base weights
            with multi_lora.installed(self.model, self.adapters) as rows:
                for kw_key, items in by_kwargs.items():
                    self._generate_group(items, kw_key, pending, rows, disable_tqdm)
            seconds = time.perf_counter() - start
            for name in pending:
                self._shares[name][task] += seconds / len(pending)
        answers = [
            self._text(self._generated[(self.current, *key)], request.args[1])
            for key, request in zip(keys, requests, strict=True)
        ]
        for request, text in zip(requests, answers, strict=True):
            self.cache_hook.add_partial("generate_until", request.args, text)
        return answers

    def _text(self, tokens: list[int], gen_kwargs: dict) -> str:
        """lm-eval's post-processing of a generated continuation (HFLM.generate_until)."""
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
        if isinstance(self.think_end_token, int):
            marks = [i for i, t in enumerate(tokens) if t == self.think_end_token]
            if marks:
                tokens = tokens[marks[-1] + 1 :]
        text = self.tok_decode(tokens)
        if isinstance(self.think_end_token, int):
            text = text.lstrip()
        return postprocess_generated_text(
            generation=text,
            stop=until,
            think_end_token=self.think_end_token if isinstance(self.think_end_token, str) else None,
        )

    def _check_plain_greedy(self) -> None:
        """transformers' generate would apply these logits processors from the model's
        generation_config; the fast path decodes plain greedy, so it refuses them."""
        config = getattr(self.model, "generation_config", None)
        neutral = {
            "repetition_penalty": (None, 1.0),
            "encoder_repetition_penalty": (None, 1.0),
            "no_repeat_ngram_size": (None, 0),
            "min_new_tokens": (None, 0),
            "min_length": (None, 0),
            "bad_words_ids": (None,),
            "suppress_tokens": (None,),
            "begin_suppress_tokens": (None,),
            "sequence_bias": (None,),
            "forced_bos_token_id": (None,),
            "forced_eos_token_id": (None,),
        }
        if set_ := [k for k, ok in neutral.items() if getattr(config, k, None) not in ok]:
            raise UserError(
                f"--fast decodes plain greedy; the model's generation_config sets "
                f"{', '.join(set_)}: evaluate it without --fast"
            )

    def _stop_ids(self) -> set[int]:
        ids = {self.eot_token_id}
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids.update(eos if isinstance(eos, list) else [] if eos is None else [eos])
        return ids

    def _generate_group(
        self,
        items,
        kw_key: str,
        models: list[str],
        rows: multi_lora.RowAdapters,
        disable_tqdm: bool,
    ) -> None:
        gen_kwargs = items[0][1]
        kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
        if kwargs.get("do_sample") or kwargs.get("temperature"):
            raise UserError(
                f"--fast decodes greedily; a task asks for sampling ({gen_kwargs}): "
                "evaluate it without --fast"
            )
        self._check_plain_greedy()
        eos = self.tok_decode(self.eot_token_id, skip_special_tokens=False)
        until = [u for u in handle_stop_sequences(kwargs.pop("until", None), eos=eos) if u]
        max_new = int(kwargs.pop("max_gen_toks"))
        max_ctx = self.max_length - max_new
        encoded = [
            self.tok_batch_encode([ctx], left_truncate_len=max_ctx, truncation=self.truncation)[0][
                0
            ].tolist()
            for ctx, _ in items
        ]
        # like lm-eval: longest first, so a batch's width is its first row's
        order = sorted(range(len(items)), key=lambda i: (-len(encoded[i]), items[i][0]))
        jobs = [(i, m) for i in order for m in models]
        per_batch = int(self.batch_size) * len(models)
        pbar = tqdm(
            total=len(jobs),
            disable=disable_tqdm or self.rank != 0,
            desc=f"Generating ({len(models)} models in one batch)",
        )
        stop_ids = self._stop_ids()
        for start in range(0, len(jobs), per_batch):
            chunk = jobs[start : start + per_batch]
            outs = self._greedy(
                [encoded[i] for i, _ in chunk],
                torch.tensor([self.models[m] for _, m in chunk]),
                rows,
                max_new,
                stop_ids,
                [u for u in until if u != eos],
            )
            for (i, m), tokens in zip(chunk, outs, strict=True):
                self._generated[(m, items[i][0], kw_key)] = tokens
            pbar.update(len(chunk))
        pbar.close()

    def _greedy(
        self,
        prompts: list[list[int]],
        model_ids: torch.Tensor,
        rows: multi_lora.RowAdapters,
        max_new: int,
        stop_ids: set[int],
        stop_strings: list[str],
    ) -> list[list[int]]:
        """Greedy continuations of left-padded prompts (attention mask and position ids as
        transformers' generate derives them). A row leaves the batch (its KV cache rows with
        it) when _COMPACT_SHARE of the batch's rows have ended (each compaction copies the cache)."""
        n, width = len(prompts), max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((n, width), pad, dtype=torch.long)
        mask = torch.zeros(n, width, dtype=torch.long)
        for r, prompt in enumerate(prompts):
            ids[r, width - len(prompt) :] = torch.tensor(prompt)
            mask[r, width - len(prompt) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        active = torch.arange(n)  # batch row -> prompt index
        rows.rows(model_ids)
        out = self._forward(
            ids,
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache
        next_pos = positions[:, -1] + 1
        tokens: list[list[int]] = [[] for _ in range(n)]
        ended = torch.zeros(n, dtype=torch.bool)
        for _ in range(max_new):
            nxt = out.logits[:, -1].argmax(dim=-1).cpu()
            for b, token in enumerate(nxt.tolist()):
                p = int(active[b])
                if ended[p]:
                    continue
                tokens[p].append(token)
                if (
                    token in stop_ids
                    or len(tokens[p]) >= max_new
                    or (stop_strings and self._hits_stop(tokens[p], stop_strings))
                ):
                    ended[p] = True
            live = ~ended[active]
            if not live.any():
                break
            if int((~live).sum()) >= _COMPACT_SHARE * len(active):
                keep = live.nonzero().squeeze(1)
                cache.batch_select_indices(keep.to(self.device))
                active, mask, nxt, next_pos = active[keep], mask[keep], nxt[keep], next_pos[keep]
                rows.rows(model_ids[active])
            mask = torch.cat([mask, torch.ones(len(active), 1, dtype=torch.long)], dim=1)
            out = self._forward(
                nxt[:, None],
                attention_mask=mask.to(self.device),
                position_ids=next_pos[:, None].to(self.device),
                cache=cache,
                use_cache=True,
            )
            next_pos = next_pos + 1
        return tokens

    def _hits_stop(self, tokens: list[int], stop_strings: list[str]) -> bool:
        text = self.tok_decode(tokens[-16:], skip_special_tokens=False)
        return any(s in text for s in stop_strings)
