"""Greedy and batched beam search over `Transformer.encode()` / `decode()` with a KV cache.

Both searches work on whole batches with tensor operations: every step feeds one token per
hypothesis through the cached decoder, and sentences that are finished leave the batch (their
rows are dropped from every state tensor and cache), so late steps only pay for what is left.

Notation: N sentences still searching, K beam size, V vocabulary, L longest output.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tfcli.model import Transformer, reorder_cache
from tfcli.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class Hypothesis:
    """One output: target ids without BOS/EOS, and its score (length-normalized log-prob)."""

    tokens: list[int]
    score: float


def max_lengths(src: torch.Tensor, a: float, b: int, limit: int) -> torch.Tensor:
    """Longest output (EOS included) per sentence: a * source length + b, at most `limit`."""
    src_len = (src != PAD_ID).sum(1) - 1  # without the source EOS
    return (src_len.float() * a + b).long().clamp(1, limit)  # (B,)


def length_penalty(length: int | torch.Tensor, alpha: float) -> float | torch.Tensor:
    """GNMT length penalty ((5 + length) / 6) ** alpha (of a length or a tensor of lengths)."""
    return ((5.0 + length) / 6.0) ** alpha


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
    """(B, n, L) ids and (B, n) scores -> lists, cut at the first EOS."""
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
    model: Transformer, src: torch.Tensor, max_len_a: float = 1.5, max_len_b: int = 10
) -> list[list[Hypothesis]]:
    """Pick the most probable token at every step.

    Args:
        src: (B, S) source ids. Returns one `Hypothesis` per sentence (score: summed log-prob).
    """
    b, device = src.size(0), src.device
    limit = max_lengths(src, max_len_a, max_len_b, model.cfg.max_positions)  # (B,)
    memory, src_mask = model.encode(src)
    cache = model.new_cache()
    rows = torch.arange(b, device=device)  # sentence of each active row
    last = torch.full((b, 1), BOS_ID, dtype=torch.long, device=device)
    score = torch.zeros(b, device=device)
    out = torch.full((b, int(limit.max())), PAD_ID, dtype=torch.long, device=device)  # (B, L)
    out_score = torch.zeros(b, device=device)
    for step in range(int(limit.max())):
        logits = model.decode(last, memory, src_mask, cache)[:, -1].float()  # (N, V)
        logprobs = torch.log_softmax(logits, -1)
        best_lp, best = constrain(logprobs, step + 1 >= limit).max(-1)  # (N,)
        score = score + best_lp
        out[rows, step] = best
        done = best == EOS_ID
        if bool(done.any()):
            out_score[rows[done]] = score[done]
            keep = (~done).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            rows, score, best, limit = rows[keep], score[keep], best[keep], limit[keep]
            memory, src_mask = memory[keep], src_mask[keep]
            reorder_cache(cache, keep, keep)
        last = best[:, None]
    return _to_hypotheses(out[:, None], out_score[:, None])


@torch.inference_mode()
def beam_search(
    model: Transformer,
    src: torch.Tensor,
    beam: int = 4,
    alpha: float = 0.6,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Batched beam search with the GNMT length penalty.

    A sentence is finished once `beam` hypotheses have ended in EOS among the top `beam`
    candidates of a step (as in fairseq); it then leaves the batch.

    Args:
        src: (B, S) source ids. Returns the `n_best` best hypotheses per sentence, best first,
        scored by log-prob / length_penalty(length with EOS, alpha).
    """
    b, k, device = src.size(0), beam, src.device
    limit = max_lengths(src, max_len_a, max_len_b, model.cfg.max_positions)  # (B,)
    max_len = int(limit.max())
    memory, src_mask = model.encode(src)  # (B, S, D): the K beams of a sentence share it
    cache = model.new_cache()
    rows = torch.arange(b, device=device)  # sentence of each active row of the state
    seqs = torch.full((b, k, 0), PAD_ID, dtype=torch.long, device=device)  # (N, K, t)
    last = torch.full((b * k, 1), BOS_ID, dtype=torch.long, device=device)
    scores = torch.full((b, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # at the first step only one beam is real
    fin_scores = torch.full((b, k), float("-inf"), device=device)  # (N, K) normalized
    fin_seqs = torch.full((b, k, max_len), PAD_ID, dtype=torch.long, device=device)
    fin_count = torch.zeros(b, dtype=torch.long, device=device)
    out_scores = torch.full((b, k), float("-inf"), device=device)
    out_seqs = torch.full((b, k, max_len), PAD_ID, dtype=torch.long, device=device)

    for step in range(max_len):
        n = rows.size(0)
        logits = model.decode(last, memory, src_mask, cache)[:, -1].float()  # (N*K, V)
        at_limit = (step + 1 >= limit).repeat_interleave(k)  # (N*K,)
        vocab = logits.size(-1)
        # score + log-prob of every continuation
        cand = torch.log_softmax(logits, -1).add_(scores.view(-1, 1))  # (N*K, V)
        cand = constrain(cand, at_limit).view(n, k * vocab)  # (N, K*V)
        top_s, top_i = cand.topk(2 * k, dim=1)  # (N, 2K)
        from_beam, token = top_i // vocab, top_i % vocab  # (N, 2K)
        new_seqs = torch.cat(
            [seqs.gather(1, from_beam[:, :, None].expand(-1, -1, step)), token[:, :, None]], 2
        )  # (N, 2K, t+1)

        # Hypotheses ending now, if ranked within the top K, join the finished ones.
        ends = (token == EOS_ID) & torch.isfinite(top_s)
        ends[:, k:] = False
        norm = torch.where(ends, top_s / length_penalty(step + 1, alpha), float("-inf"))
        padded = F.pad(new_seqs, (0, max_len - step - 1), value=PAD_ID)  # (N, 2K, L)
        pool_s = torch.cat([fin_scores, norm], 1)  # (N, 3K)
        fin_scores, pick = pool_s.topk(k, dim=1)
        fin_seqs = torch.cat([fin_seqs, padded], 1).gather(
            1, pick[:, :, None].expand(-1, -1, max_len)
        )  # (N, K, L)
        fin_count = fin_count + ends.sum(1)

        # The best K candidates that did not end continue.
        alive_s = torch.where(token == EOS_ID, float("-inf"), top_s)
        scores, pick = alive_s.topk(k, dim=1)  # (N, K)
        from_beam, token = from_beam.gather(1, pick), token.gather(1, pick)
        seqs = new_seqs.gather(1, pick[:, :, None].expand(-1, -1, step + 1))  # (N, K, t+1)
        flat = (torch.arange(n, device=device)[:, None] * k + from_beam).view(-1)  # (N*K,)
        reorder_cache(cache, flat)
        last = token.view(-1, 1)

        done = (fin_count >= k) | (step + 1 >= limit)  # (N,)
        if bool(done.any()):
            out_scores[rows[done]] = fin_scores[done]
            out_seqs[rows[done]] = fin_seqs[done]
            keep = (~done).nonzero().squeeze(1)  # (N',)
            if keep.numel() == 0:
                break
            flat_keep = (keep[:, None] * k + torch.arange(k, device=device)).view(-1)
            rows, limit, scores, seqs = rows[keep], limit[keep], scores[keep], seqs[keep]
            fin_scores, fin_seqs, fin_count = fin_scores[keep], fin_seqs[keep], fin_count[keep]
            memory, src_mask, last = memory[keep], src_mask[keep], last[flat_keep]
            reorder_cache(cache, flat_keep, keep)
    return _to_hypotheses(out_seqs[:, :n_best], out_scores[:, :n_best])


def search(
    model: Transformer,
    src: torch.Tensor,
    beam: int = 4,
    alpha: float = 0.6,
    max_len_a: float = 1.5,
    max_len_b: int = 10,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """Greedy search for beam 1, beam search otherwise."""
    if beam == 1:
        return greedy_search(model, src, max_len_a, max_len_b)
    return beam_search(model, src, beam, alpha, max_len_a, max_len_b, n_best)
