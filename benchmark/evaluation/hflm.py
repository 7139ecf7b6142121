"""lm-eval's HFLM as the evaluation runs it: the same requests and answers, measured per task,
with less work per loglikelihood request.

Why a subclass: HFLM._loglikelihood_tokens runs the model over every (context + continuation)
and log-softmaxes the logits of every position, although it reads only the continuation's. For
SmolLM2 the LM head is a 576 x 49,152 matmul per position (a fifth of the forward's FLOPs) and
the log-softmax over 49,152 floats per position is memory traffic on top; the context (the
chat-formatted question) is ~40% of a marine_qa_ppl or marine_mc request's positions, and a
multiple-choice question sends the same context four times. lm-eval shares a context only
between one-token continuations and has no hook that tells the model call which positions it
will read, so the loop is rewritten here on transformers' own pieces (`logits_to_keep`, the KV
cache, attention mask and position ids): each distinct context runs once, the LM head only
where a continuation token is predicted. It falls back to lm-eval's loop for seq2seq models,
batch size "auto", forwards without `logits_to_keep`, and requests lm-eval truncates.

Generation is lm-eval's own: 0.4.13 passes the left-padding attention mask to `generate`,
and transformers derives the position ids from it (GenerationMixin.
_prepare_position_ids_for_generation), so padding tokens are neither attended nor counted.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

from benchmark.evaluation import lm_head


class EvalHFLM(HFLM):
    """HFLM that times each task's requests, counts generated tokens, and runs each
    loglikelihood context once and the LM head only where a continuation token is predicted.

    Log-softmax runs in fp32 unless told otherwise (`softmax_dtype`, an HFLM argument): HFLM's
    default computes it, and sums the continuation's log-probs, in the model's dtype, so in bf16
    a loglikelihood of -150 comes back rounded to a whole nat (bf16 keeps 8 significant bits)
    and two choices of a multiple-choice question tie, the first one winning."""

    def __init__(self, *args, softmax_dtype: str | torch.dtype | None = torch.float32, **kwargs):
        super().__init__(*args, softmax_dtype=softmax_dtype, **kwargs)
        #: the LM head on `logits_to_keep` slices without a weight copy per row (same bits)
        self.rowwise_lm_head = lm_head.install(self.model)
        self.reset_timing()

    def reset_timing(self) -> None:
        """Zero the counters (the runner evaluates several models on one instance)."""
        #: seconds the model spent on each task's requests (scoring excluded)
        self.task_s: dict[str, float] = defaultdict(float)
        self.generate_s = 0.0
        self.generated_tokens = 0

    def timing(self) -> dict:
        """The model's seconds since reset_timing (the manifest's per-model `timing`)."""
        return {
            "generate_s": self.generate_s,
            "generated_tokens": self.generated_tokens,
            "gen_tok_s": self.generated_tokens / self.generate_s if self.generate_s else 0.0,
            # the model's seconds on each task's requests (lm-eval's scoring not included)
            "task_s": dict(self.task_s),
        }

    # --- per-task timing ---------------------------------------------------------------------

    def _per_task(self, method, requests: list[Instance], disable_tqdm: bool) -> list:
        """Run `method` on each task's requests in turn and time it. lm-eval hands every task's
        requests of one type over at once; split, a batch holds one task, so its seconds are
        that task's. (In fp32 no answer depends on its batch; in bf16 the batch's shape moves
        the rounding, as a different batch size would.)"""
        by_task: dict[str | None, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            by_task[request.task_name].append(i)
        out: list = [None] * len(requests)
        for task, indices in by_task.items():
            start = time.perf_counter()
            answers = method([requests[i] for i in indices], disable_tqdm=disable_tqdm)
            self.task_s[str(task)] += time.perf_counter() - start
            for i, answer in zip(indices, answers, strict=True):
                out[i] = answer
        return out

    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False):
        return self._per_task(super().loglikelihood, requests, disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False):
        return self._per_task(super().loglikelihood_rolling, requests, disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False):
        start = time.perf_counter()
        out = self._per_task(super().generate_until, requests, disable_tqdm)
        self.generate_s += time.perf_counter() - start
        self._count_generated(out)
        return out

    def _count_generated(self, answers: list[str]) -> None:
        self.generated_tokens += sum(
            len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in answers
        )

    # --- loglikelihood: each context once, the LM head on the continuation only -------------

    def _keeps_logits(self) -> bool:
        """Whether the forward takes `logits_to_keep` and a KV cache as `cache`."""
        return {"logits_to_keep", "cache"} <= set(inspect.signature(self.model.forward).parameters)

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """lm-eval's (log-prob, is-greedy) per (context, continuation) token pair, computed in
        two passes: the batch's distinct contexts (the LM head only on the last positions,
        where the first continuation token is predicted), then the continuations on those
        contexts' KV cache (the LM head on their positions).
        A multiple-choice question's context is computed once for its four choices. Requests
        that lm-eval would truncate from the left go through lm-eval's own loop."""
        batch_size = self.batch_size if self.batch_size != "auto" else override_bs
        if self.backend != "causal" or not batch_size or not self._keeps_logits():
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        batch_size = int(batch_size)
        res: list = [None] * len(requests)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        truncated = []
        for i, (_, context_enc, continuation_enc) in enumerate(requests):
            assert context_enc and continuation_enc
            if len(context_enc) + len(continuation_enc) > self.max_length + 1:
                truncated.append(i)
            else:
                groups[tuple(context_enc)].append(i)
        if truncated:
            lm_eval_own = super()._loglikelihood_tokens(
                [requests[i] for i in truncated], disable_tqdm, override_bs
            )
            for i, answer in zip(truncated, lm_eval_own, strict=True):
                res[i] = answer

        pbar = tqdm(
            total=len(requests) - len(truncated),
            disable=disable_tqdm or self.rank != 0,
            desc="Running loglikelihood requests",
        )
        contexts = sorted(groups, key=lambda c: (-len(c), c))  # similar lengths share a batch
        for start in range(0, len(contexts), batch_size):
            block = contexts[start : start + batch_size]
            cache, first = self._context_pass(block)
            rows = [(i, b) for b, context in enumerate(block) for i in groups[context]]
            rows.sort(key=lambda row: (-len(requests[row[0]][2]), row[0]))
            for chunk_start in range(0, len(rows), batch_size):
                chunk = rows[chunk_start : chunk_start + batch_size]
                for (i, _), logprobs in zip(
                    chunk,
                    self._continuation_pass(requests, block, chunk, cache, first),
                    strict=True,
                ):
                    res[i] = self._score(requests[i], logprobs)
                    pbar.update(1)
        pbar.close()
        return res

    def _forward(self, input_ids: torch.Tensor, **kwargs):
        with (
            torch.no_grad(),
            torch.autocast(
                device_type=self.device.type,
                dtype=self.mixed_precision_dtype,
                enabled=self.mixed_precision_dtype is not None,
            ),
        ):
            return self.model(input_ids.to(self.device), **kwargs)

    def _context_pass(self, block: list[tuple[int, ...]]):
        """(KV cache of the right-padded contexts, log-probs at each context's last position)."""
        lens = [len(c) for c in block]
        width = max(lens)
        ids = torch.zeros(len(block), width, dtype=torch.long)
        for b, context in enumerate(block):
            ids[b, : lens[b]] = torch.tensor(context)
        keep = width - min(lens) + 1  # causal: a padding position never reaches a real one
        out = self._forward(ids, use_cache=True, logits_to_keep=keep)
        last = torch.tensor([n - 1 - (width - keep) for n in lens], device=self.device)
        logits = out.logits[torch.arange(len(block), device=self.device), last]
        return out.cache, F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)

    def _continuation_pass(self, requests, block, chunk, cache, first) -> list[torch.Tensor]:
        """Per row of `chunk` ((request index, context index)), the log-probs predicting each
        continuation token: the first from the context pass, the rest from the continuation
        (but its last token) run on a copy of its context's cache, context padding masked.

        The log-softmax runs row by row on the logits the row reads (a row's log-softmax is
        the same numbers whether computed alone or in the batch's tensor): over the whole
        chunk it would write rows x width x 49,152 fp32 values (~1.5 GB for 80 answers of 60
        tokens), mostly padding, and that traffic cost as much as a fifth of the pass."""
        conts = [requests[i][2] for i, _ in chunk]
        owner = torch.tensor([b for _, b in chunk], device=self.device)
        width = max(len(c) for c in conts) - 1
        heads = first[owner]
        if width == 0:
            return [heads[r : r + 1] for r in range(len(chunk))]
        lens = torch.tensor([len(block[b]) for _, b in chunk], device=self.device)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        cont_lens = torch.tensor([len(c) - 1 for c in conts], device=self.device)
        for r, cont in enumerate(conts):
            ids[r, : len(cont) - 1] = torch.tensor(cont[:-1])
        ctx_width = cache.get_seq_length()
        mask = torch.cat(
            [
                torch.arange(ctx_width, device=self.device)[None] < lens[:, None],
                torch.arange(width, device=self.device)[None] < cont_lens[:, None],
            ],
            dim=1,
        ).long()
        rows_cache = copy.deepcopy(cache)
        rows_cache.reorder_cache(owner)  # one copy of its context per continuation
        logits = self._forward(
            ids,
            attention_mask=mask,
            position_ids=lens[:, None] + torch.arange(width, device=self.device)[None],
            cache=rows_cache,
            use_cache=True,
        ).logits
        return [
            torch.cat(
                [
                    heads[r : r + 1],
                    F.log_softmax(logits[r, : len(c) - 1], dim=-1, dtype=self.softmax_dtype),
                ]
            )
            for r, c in enumerate(conts)
        ]

    def _score(self, request, logprobs: torch.Tensor) -> tuple[float, bool]:
        """lm-eval's answer: the continuation's summed log-prob and whether greedy picks it."""
        request_str, _, continuation_enc = request
        cont = torch.tensor(continuation_enc, dtype=torch.long, device=self.device)
        answer = (
            float(logprobs.gather(1, cont[:, None]).sum()),
            bool((logprobs.argmax(dim=-1) == cont).all()),
        )
        if request_str is not None:  # loglikelihood_rolling caches per document
            self.cache_hook.add_partial("loglikelihood", request_str, answer)
        return answer
