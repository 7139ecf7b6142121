"""lm-eval's HFLM as the evaluation runs it: the same requests and answers, measured per task,
with the LM head computed only where lm-eval reads log-probs.

Why a subclass: HFLM._loglikelihood_tokens runs the model over each padded batch and then
log-softmaxes the logits of every position, although it reads only the continuation's. For
SmolLM2 the LM head is a 576 x 49,152 matmul per position (a fifth of the forward's FLOPs), and
the log-softmax over 49,152 floats per position is memory traffic on top; the context (the
chat-formatted question) is ~40% of the positions of a marine_qa_ppl or marine_mc request.
transformers' `logits_to_keep` applies the LM head to the last N positions only; lm-eval has no
hook that tells the model call which positions it will read, so the request loop is rewritten
here (with lm-eval's own Collator and padding), and falls back to lm-eval's where it differs
(seq2seq models, batch size "auto", models whose forward has no `logits_to_keep`).

Generation is lm-eval's own: 0.4.13 passes the left-padding attention mask to `generate`,
and transformers derives the position ids from it (GenerationMixin.
_prepare_position_ids_for_generation), so padding tokens are neither attended nor counted.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import Collator
from lm_eval.models.utils_hf import pad_and_concat
from tqdm import tqdm


class EvalHFLM(HFLM):
    """HFLM that times each task's requests, counts generated tokens, and computes the LM head
    only at the positions a loglikelihood request scores.

    Log-softmax runs in fp32 unless told otherwise (`softmax_dtype`, an HFLM argument): HFLM's
    default computes it, and sums the continuation's log-probs, in the model's dtype, so in bf16
    a loglikelihood of -150 comes back rounded to a whole nat (bf16 keeps 8 significant bits)
    and two choices of a multiple-choice question tie, the first one winning."""

    def __init__(self, *args, softmax_dtype: str | torch.dtype | None = torch.float32, **kwargs):
        super().__init__(*args, softmax_dtype=softmax_dtype, **kwargs)
        self.reset_timing()

    def reset_timing(self) -> None:
        """Zero the counters (the runner evaluates several models on one instance)."""
        #: seconds the model spent on each task's requests (scoring excluded)
        self.task_s: dict[str, float] = defaultdict(float)
        self.generate_s = 0.0
        self.generated_tokens = 0

    # --- per-task timing ---------------------------------------------------------------------

    def _per_task(self, method, requests: list[Instance], disable_tqdm: bool) -> list:
        """Run `method` on each task's requests in turn and time it. lm-eval hands every task's
        requests of one type over at once; split, a batch holds one task, so its seconds are
        that task's (the answers do not depend on it: see the module docstring)."""
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
        self.generated_tokens += sum(
            len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in out
        )
        return out

    # --- continuation-only loglikelihood -----------------------------------------------------

    def _keeps_logits(self) -> bool:
        return "logits_to_keep" in inspect.signature(self.model.forward).parameters

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs=None):
        """lm-eval's (log-prob, is-greedy) per (context, continuation) token pair, the same
        batches, truncation and dtypes, with the LM head run on the last positions of the batch
        that hold a continuation token (`logits_to_keep`) instead of on every position."""
        batch_size = self.batch_size if self.batch_size != "auto" else override_bs
        if self.backend != "causal" or not batch_size or not self._keeps_logits():
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)

        def longest_first(req):  # lm-eval's order: the first batch shows the memory peak
            tokens = req[1] + req[2]
            return -len(tokens), tuple(tokens)

        ordered = Collator(requests, sort_fn=longest_first)
        pbar = tqdm(
            total=len(requests),
            disable=disable_tqdm or self.rank != 0,
            desc="Running loglikelihood requests",
        )
        res = []
        for chunk in ordered.get_batched(n=int(batch_size)):
            inps, starts = [], []
            for _, context_enc, continuation_enc in chunk:
                assert context_enc and continuation_enc
                assert len(continuation_enc) <= self.max_length
                # lm-eval's left truncation; position i predicts token i + 1
                inp = (context_enc + continuation_enc)[-(self.max_length + 1) :][:-1]
                inps.append(torch.tensor(inp, dtype=torch.long, device=self.device))
                starts.append(len(inp) - len(continuation_enc))
            width = max(len(inp) for inp in inps)
            keep = width - min(starts)  # the last `keep` positions hold every continuation
            batch = pad_and_concat(width, inps, padding_side="right")
            with (
                torch.no_grad(),
                torch.autocast(
                    device_type=self.device.type,
                    dtype=self.mixed_precision_dtype,
                    enabled=self.mixed_precision_dtype is not None,
                ),
            ):
                logits = self.model(batch, logits_to_keep=keep).logits
            logprobs = F.log_softmax(logits, dim=-1, dtype=self.softmax_dtype)
            for (request_str, _, continuation_enc), row, start in zip(
                chunk, logprobs, starts, strict=True
            ):
                first = start - (width - keep)
                row = row[first : first + len(continuation_enc)]
                cont = torch.tensor(continuation_enc, dtype=torch.long, device=self.device)
                greedy = bool((row.argmax(dim=-1) == cont).all())
                answer = (float(row.gather(1, cont[:, None]).sum()), greedy)
                res.append(answer)
                if request_str is not None:  # loglikelihood_rolling caches per document
                    self.cache_hook.add_partial("loglikelihood", request_str, answer)
                pbar.update(1)
        pbar.close()
        return ordered.get_original(res)
