"""Greedy and batched beam search over `Transformer.encode()` / `decode()` with a decoder state.

Both searches work on whole batches with tensor operations: every step feeds one token per
hypothesis through the cached decoder, and sentences that are finished leave the batch (their
rows are dropped from every state tensor and from the decoder state), so late steps only pay
for what is left. The settings (beam, length penalty, length limit, n-best) are a DecodeConfig.
A `Finished` callback, when given, gets each sentence's hypotheses as soon as it leaves the
batch (a server answers a short request without waiting for the longest of its batch).

Notation as in layers.py: B sentences, N sentences still searching, K beam size, V vocabulary,
T longest output, t steps so far.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tfcli.config import DecodeConfig
from tfcli.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from tfcli.model.kernels import top_k
from tfcli.model.transformer import Transformer


@dataclass(frozen=True)
class Hypothesis:
    """One output: target ids without BOS/EOS, and the score the search ranked it by.

    Beam search: log-probability / length_penalty(length with EOS). Greedy search: the
    log-probability itself (one hypothesis, nothing to rank).
    """

    tokens: list[int]
    score: float


# called with the batch rows of sentences just finished and their hypotheses, best first
Finished = Callable[[list[int], list[list["Hypothesis"]]], None]


def max_lengths(src: torch.Tensor, a: float, b: int, limit: int) -> torch.Tensor:
    """Longest output (EOS included) per sentence: a * source length + b, at most `limit`."""
    src_len = (src != PAD_ID).sum(1) - 1  # without the source EOS
    return (src_len.float() * a + b).long().clamp(1, limit)  # (B,)


def length_penalty(length: int | torch.Tensor, alpha: float) -> float | torch.Tensor:
    """GNMT length penalty ((5 + length) / 6) ** alpha (of a length or a tensor of lengths)."""
    return ((5.0 + length) / 6.0) ** alpha


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """fp32 log-probabilities of a step's logits (N, V), in one fused kernel.

    On the CPU, log_softmax over 8,000 words took less than half the time of logsumexp, which
    runs as separate max, subtract, exp, sum and log passes.
    """
    return F.log_softmax(logits, -1, dtype=torch.float32)


def constrain(logprobs: torch.Tensor, at_limit: torch.Tensor) -> torch.Tensor:
    """PAD and BOS are never produced; rows at their length limit may only end (EOS).

    EOS keeps its log-prob, so an output cut at the limit is scored like any other.
    Shape: logprobs (N, V) (or log-probs plus a score per row), changed in place;
    at_limit (N,) bool.
    """
    logprobs[:, [PAD_ID, BOS_ID]] = float("-inf")
    if bool(at_limit.any()):  # rare: touch only the rows at their limit
        rows = at_limit.nonzero().squeeze(1)
        eos = logprobs[rows, EOS_ID]
        logprobs[rows] = float("-inf")
        logprobs[rows, EOS_ID] = eos
    return logprobs


def _to_hypotheses(tokens: torch.Tensor, scores: torch.Tensor) -> list[list[Hypothesis]]:
    """(B, n, T) ids and (B, n) scores -> lists, cut at the first EOS."""
    out = []
    for sent_tokens, sent_scores in zip(tokens.tolist(), scores.tolist()):
        hyps = []
        for ids, score in zip(sent_tokens, sent_scores):
            if EOS_ID in ids:
                ids = ids[: ids.index(EOS_ID)]
            hyps.append(Hypothesis([i for i in ids if i != PAD_ID], score))
        out.append(hyps)
    return out


@torch.inference_mode()
def greedy_search(
    model: Transformer, src: torch.Tensor, decode: DecodeConfig, finished: Finished | None = None
) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step: one `Hypothesis` per sentence of src (B, S)."""
    b, device = src.size(0), src.device
    limit = max_lengths(src, decode.max_len_a, decode.max_len_b, model.cfg.max_positions)  # (B,)
    memory, src_mask = model.encode(src)
    state = model.new_state()
    rows = torch.arange(b, device=device)  # sentence of each active row
    last = torch.full((b, 1), BOS_ID, dtype=torch.long, device=device)
    score = torch.zeros(b, device=device)
    out = torch.full((b, int(limit.max())), PAD_ID, dtype=torch.long, device=device)  # (B, T)
    out_score = torch.zeros(b, device=device)
    for step in range(int(limit.max())):
        logprobs = log_probs(model.decode(last, memory, src_mask, state)[:, -1])  # (N, V)
        best_logprob, best = top_k(constrain(logprobs, step + 1 >= limit), 1)  # (N, 1) each
        best = best.squeeze(1)  # (N,)
        score = score + best_logprob.squeeze(1)
        out[rows, step] = best
        done = best == EOS_ID
        if bool(done.any()):
            out_score[rows[done]] = score[done]
            if finished is not None:
                ended = rows[done]
                finished(ended.tolist(), _to_hypotheses(out[ended, None], out_score[ended, None]))
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            rows, score, best, limit = rows[keep], score[keep], best[keep], limit[keep]
            memory, src_mask = memory[keep], src_mask[keep]
            state.select_sentences(keep)
        last = best[:, None]
    return _to_hypotheses(out[:, None], out_score[:, None])


class _Beams:
    """The beam search of one batch: the live hypotheses and the finished ones, per sentence."""

    def __init__(self, b: int, k: int, max_len: int, device: torch.device) -> None:
        self.k, self.max_len = k, max_len
        self.rows = torch.arange(b, device=device)  # sentence of each active row of the state
        self.seqs = torch.full((b, k, 0), PAD_ID, dtype=torch.long, device=device)  # (N, K, t)
        self.scores = torch.full((b, k), float("-inf"), device=device)
        self.scores[:, 0] = 0.0  # at the first step only one beam is real
        self.fin_scores = torch.full((b, k), float("-inf"), device=device)  # (N, K) normalized
        self.fin_seqs = torch.full((b, k, max_len), PAD_ID, dtype=torch.long, device=device)
        self.fin_count = torch.zeros(b, dtype=torch.long, device=device)
        self.out_scores = torch.full((b, k), float("-inf"), device=device)
        self.out_seqs = torch.full((b, k, max_len), PAD_ID, dtype=torch.long, device=device)

    def step(
        self, cand: torch.Tensor, ids: torch.Tensor, step: int, alpha: float
    ) -> tuple[torch.Tensor, ...]:
        """Extend by candidates of scores cand (N, K*C), C per beam, of tokens ids (N, K*C);
        -> (from_beam, token), each (N, K)."""
        k, per_beam = self.k, cand.size(1) // self.k
        top_s, top_i = cand.topk(2 * k, dim=1)  # (N, 2K)
        from_beam, token = top_i // per_beam, ids.gather(1, top_i)  # (N, 2K)
        new_seqs = torch.cat(
            [self.seqs.gather(1, from_beam[:, :, None].expand(-1, -1, step)), token[:, :, None]],
            2,
        )  # (N, 2K, t+1)
        # Hypotheses ending now, if ranked within the top K, join the finished ones.
        ends = (token == EOS_ID) & torch.isfinite(top_s)
        ends[:, k:] = False
        norm = torch.where(ends, top_s / length_penalty(step + 1, alpha), float("-inf"))
        padded = F.pad(new_seqs, (0, self.max_len - step - 1), value=PAD_ID)  # (N, 2K, T)
        pool_s = torch.cat([self.fin_scores, norm], 1)  # (N, 3K)
        self.fin_scores, pick = pool_s.topk(k, dim=1)
        self.fin_seqs = torch.cat([self.fin_seqs, padded], 1).gather(
            1, pick[:, :, None].expand(-1, -1, self.max_len)
        )  # (N, K, T)
        self.fin_count = self.fin_count + ends.sum(1)
        # The best K candidates that did not end continue.
        alive_s = torch.where(token == EOS_ID, float("-inf"), top_s)
        self.scores, pick = alive_s.topk(k, dim=1)  # (N, K)
        self.seqs = new_seqs.gather(1, pick[:, :, None].expand(-1, -1, step + 1))  # (N, K, t+1)
        return from_beam.gather(1, pick), token.gather(1, pick)

    def finish(self, done: torch.Tensor, n_best: int, finished: Finished | None) -> torch.Tensor:
        """Put the sentences `done` (N,) bool into the output, and pass their `n_best` best
        to `finished`; -> the rows kept (N',)."""
        self.out_scores[self.rows[done]] = self.fin_scores[done]
        self.out_seqs[self.rows[done]] = self.fin_seqs[done]
        if finished is not None:
            hyps = _to_hypotheses(self.fin_seqs[done, :n_best], self.fin_scores[done, :n_best])
            finished(self.rows[done].tolist(), hyps)
        keep = (~done).nonzero().squeeze(1)  # (N',)
        self.rows, self.scores, self.seqs = self.rows[keep], self.scores[keep], self.seqs[keep]
        self.fin_scores, self.fin_seqs = self.fin_scores[keep], self.fin_seqs[keep]
        self.fin_count = self.fin_count[keep]
        return keep


def _candidates(
    logits: torch.Tensor, scores: torch.Tensor, at_limit: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The continuations a beam step chooses from: each beam's best C = 2K tokens (a sentence's
    best 2K continuations are always among them), scored score + log-prob.

    Shape: logits (N*K, V), scores (N, K), at_limit (N*K,) -> scores and token ids, (N, K*C)
    """
    n, k = scores.shape
    logprobs = constrain(log_probs(logits), at_limit)  # (N*K, V)
    top, ids = top_k(logprobs, min(2 * k, logits.size(1)))  # (N*K, C)
    cand = top.add_(scores.view(-1, 1))  # (N*K, C)
    return cand.view(n, -1), ids.view(n, -1)


@torch.inference_mode()
def beam_search(
    model: Transformer, src: torch.Tensor, decode: DecodeConfig, finished: Finished | None = None
) -> list[list[Hypothesis]]:
    """Batched beam search with the GNMT length penalty.

    A sentence is finished once `decode.beam` hypotheses have ended in EOS among the top beam
    candidates of a step (as in fairseq); it then leaves the batch. Returns the
    `decode.n_best` best hypotheses per sentence of src (B, S), best first, scored by
    log-prob / length_penalty(length with EOS, decode.length_penalty).
    """
    b, k, device = src.size(0), decode.beam, src.device
    limit = max_lengths(src, decode.max_len_a, decode.max_len_b, model.cfg.max_positions)  # (B,)
    beams = _Beams(b, k, int(limit.max()), device)
    memory, src_mask = model.encode(src)  # (B, S, D): the K beams of a sentence share it
    state = model.new_state(beams=k)
    last = torch.full((b * k, 1), BOS_ID, dtype=torch.long, device=device)
    for step in range(beams.max_len):
        n = beams.rows.size(0)
        logits = model.decode(last, memory, src_mask, state)[:, -1]  # (N*K, V)
        at_limit = (step + 1 >= limit).repeat_interleave(k)  # (N*K,)
        cand, ids = _candidates(logits, beams.scores, at_limit)  # (N, K*C) each
        from_beam, token = beams.step(cand, ids, step, decode.length_penalty)
        state.reorder((torch.arange(n, device=device)[:, None] * k + from_beam).view(-1))
        last = token.view(-1, 1)  # (N*K, 1)
        done = (beams.fin_count >= k) | (step + 1 >= limit)  # (N,)
        if bool(done.any()):
            keep = beams.finish(done, decode.n_best, finished)
            if keep.numel() == 0:
                break
            flat_keep = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)  # (N'*K,)
            limit, memory, src_mask, last = (
                limit[keep],
                memory[keep],
                src_mask[keep],
                last[flat_keep],
            )
            state.select_sentences(keep)
    n_best = decode.n_best
    return _to_hypotheses(beams.out_seqs[:, :n_best], beams.out_scores[:, :n_best])


def search(
    model: Transformer, src: torch.Tensor, decode: DecodeConfig, finished: Finished | None = None
) -> list[list[Hypothesis]]:
    """Greedy search for beam 1, beam search otherwise."""
    if decode.beam == 1:
        return greedy_search(model, src, decode, finished)
    return beam_search(model, src, decode, finished)
